# shellcheck shell=bash
# The guest runner, sourced by hack/vm/run.sh and hack/test-vm.sh: boots the
# image hack/vm/image.sh builds under qemu (TCG: KVM is not used), waits for
# sshd with a bound, runs commands in the guest over ssh through a forward on
# 127.0.0.1, and always powers the guest off (an EXIT trap; a guest that does
# not power off in time is killed). Functions and variables start with vm_ /
# VM_.
#
#   vm_init               a run directory, a throwaway ssh key, the traps
#   vm_finish             power off and remove the run directory (kept with
#                         MIRROR_REGISTRY_VM_KEEP=1), so that vm_init may
#                         start another guest (another VM_DEBIAN) in the
#                         same script
#   vm_payload            the payload directory (becomes the guest's
#                         read-only /mnt/payload at every boot)
#   vm_forward            one more port forwarded: 127.0.0.1:P to the guest's
#                         P, P chosen free at the first boot (vm_port N)
#   vm_boot               power on (the first boot seals the payload)
#   vm_wait_ssh SECS [BOOT_ID]   until sshd answers (in a boot other than
#                         BOOT_ID)
#   vm_ssh CMD            run CMD (one string, run by the guest's shell)
#   vm_reboot             `systemctl reboot` in the guest, wait for the new boot
#   vm_kill               hard power loss: qemu killed at once
#   vm_poweroff           clean power off, bounded
#   vm_wait_off SECS      until the guest powers itself off (for a guest
#                         with no network device, which runs what its
#                         disks bring and stops)
#
# A function vm_on_exit, when the sourcing script defines one, runs last
# at exit.
#
# Environment: MIRROR_REGISTRY_VM_DEBIAN (12, the default: podman 4.3; or
# 13: podman 5), MIRROR_REGISTRY_VM_CACHE (image cache, see image.sh),
# MIRROR_REGISTRY_VM_MEMORY (MiB, 2048), MIRROR_REGISTRY_VM_CPUS (2),
# MIRROR_REGISTRY_VM_KEEP=1 keeps the run directory (disk, serial logs),
# MIRROR_REGISTRY_VM_TCG_THREAD (multi, the default, or single),
# MIRROR_REGISTRY_VM_KERNEL_ARGS (more kernel arguments; by default
# tsc=unstable for Debian 13, none for 12), MIRROR_REGISTRY_VM_NIC=none boots with no network device at all (no ssh,
# no forwards). VM_DEBIAN and VM_NIC may also be set after sourcing this,
# before vm_init / vm_boot.

# shellcheck disable=SC2034 # VM_ variables are read by the scripts sourcing this
VM_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
VM_MEMORY=${MIRROR_REGISTRY_VM_MEMORY:-2048}
VM_CPUS=${MIRROR_REGISTRY_VM_CPUS:-2}
VM_KEEP=${MIRROR_REGISTRY_VM_KEEP:-0}
VM_DEBIAN=${MIRROR_REGISTRY_VM_DEBIAN:-12}
VM_NIC=${MIRROR_REGISTRY_VM_NIC:-user}
# TCG's threading: multi (a host thread per vCPU, the default) or single.
VM_TCG_THREAD=${MIRROR_REGISTRY_VM_TCG_THREAD:-multi}
# More words for the guest kernel's command line. Debian 13's kernel (6.12),
# finding the emulated TSCs in step, marks sched_clock stable at boot and
# patches that branch into its running code; under multi-threaded TCG the
# other vCPU then meets the patch's int3 and the kernel panics ("Oops:
# int3" in sched_clock_idle_wakeup_event). tsc=unstable leaves it on HPET,
# where Debian 12's 6.1 ends up by itself; single-threaded TCG also avoids
# the panic but made the guest several times slower.
VM_KERNEL_ARGS=${MIRROR_REGISTRY_VM_KERNEL_ARGS-default}
VM_HOST_ALIAS=mirror-registry-vm
VM_IMAGE=
VM_RUN=
VM_PID=
VM_SSH_PORT=
VM_FORWARDS=()
VM_BOOTS=0
VM_POWERED_ON_AT=
VM_SSH_OPTS=()

vm_log() { printf '%s\n' "$*" >&2; }
vm_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Seconds since the epoch, with fractions.
vm_now() { date +%s.%N; }
# Seconds from $1 to now, one decimal.
vm_since() { awk -v a="$1" -v b="$(vm_now)" 'BEGIN { printf "%.1f", b - a }'; }

# A port nothing listens on at 127.0.0.1 (qemu's bind is the real test; a
# taken port makes vm_boot pick again).
vm_free_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            printf '%s' "$p"
            return 0
        fi
    done
    return 1
}

vm_init() {
    [[ $(id -u) -eq 0 ]] || vm_die "run as root"
    VM_IMAGE=$("$VM_DIR/image.sh" --debian "$VM_DEBIAN" --print-dir) || vm_die "no guest image"
    VM_RUN=$(mktemp -d "${TMPDIR:-/var/tmp}/mirror-registry-vm.XXXXXX")
    trap vm_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # Held while this run boots from the image, so a rebuild does not remove
    # it underneath.
    exec 8<"$VM_IMAGE"
    flock -s 8
    ssh-keygen -q -t ed25519 -N '' -C "mirror-registry-vm-run" -f "$VM_RUN/id_ed25519"
    printf '%s %s\n' "$VM_HOST_ALIAS" "$(cut -d ' ' -f 1,2 <"$VM_IMAGE/ssh_host_ed25519_key.pub")" \
        >"$VM_RUN/known_hosts"
    mkdir -p -- "$VM_RUN/payload/ssh"
    chmod 0755 -- "$VM_RUN/payload"
    cp -- "$VM_RUN/id_ed25519.pub" "$VM_RUN/payload/ssh/authorized_keys"
    chmod 0644 -- "$VM_RUN/payload/ssh/authorized_keys"
    qemu-img create -q -f qcow2 -b "$VM_IMAGE/disk.img" -F raw "$VM_RUN/disk.qcow2"
}

vm_payload() { printf '%s' "$VM_RUN/payload"; }

vm_forward() { VM_FORWARDS+=(""); }

vm_seal_payload() {
    local size
    [[ -f $VM_RUN/payload.img ]] && return 0
    size=$(du -sm -- "$VM_RUN/payload" | cut -f 1)
    size=$((size + size / 4 + 16))
    mkfs.ext4 -q -F -L mr-payload -d "$VM_RUN/payload" "$VM_RUN/payload.img" "${size}M" >/dev/null ||
        vm_die "cannot make the payload disk"
}

vm_alive() {
    [[ -n $VM_PID ]] && kill -0 "$VM_PID" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$VM_PID/cmdline" 2>/dev/null | grep -qF -- "$VM_RUN/"
}

# Powers the guest on, with the same disk as before. Ports are chosen at the
# first boot and kept; a port taken meanwhile is chosen anew.
vm_boot() {
    local attempt fwd p log err nic thread=$VM_TCG_THREAD args=$VM_KERNEL_ARGS
    if [[ $args == default ]]; then
        args=
        [[ $VM_DEBIAN == 12 ]] || args=tsc=unstable
    fi
    vm_alive && vm_die "the guest is already running (pid $VM_PID)"
    [[ $VM_NIC == user || $VM_NIC == none ]] || vm_die "VM_NIC (MIRROR_REGISTRY_VM_NIC): '$VM_NIC' is not user or none"
    vm_seal_payload
    VM_BOOTS=$((VM_BOOTS + 1))
    log=$VM_RUN/serial.log
    for ((attempt = 0; attempt < 5; attempt++)); do
        [[ -n $VM_SSH_PORT ]] || VM_SSH_PORT=$(vm_free_port) || vm_die "no free port"
        fwd="hostfwd=tcp:127.0.0.1:$VM_SSH_PORT-:22"
        for p in "${!VM_FORWARDS[@]}"; do
            [[ -n ${VM_FORWARDS[p]} ]] || VM_FORWARDS[p]=$(vm_free_port) || vm_die "no free port"
            fwd+=",hostfwd=tcp:127.0.0.1:${VM_FORWARDS[p]}-:${VM_FORWARDS[p]}"
        done
        nic="user,model=virtio-net-pci,restrict=on,$fwd"
        [[ $VM_NIC == none ]] && nic=none
        printf '\n===== boot %s (%s, Debian %s, tcg thread=%s, kernel args: %s, network: %s) =====\n' \
            "$VM_BOOTS" "$(date -u +%FT%TZ)" "$VM_DEBIAN" "$thread" "${args:-none}" "$VM_NIC" >>"$log"
        VM_POWERED_ON_AT=$(vm_now)
        if err=$(qemu-system-x86_64 \
            -name mirror-registry-vm -machine pc -accel "tcg,thread=$thread" \
            -smp "$VM_CPUS" -m "$VM_MEMORY" \
            -kernel "$VM_IMAGE/vmlinuz" -initrd "$VM_IMAGE/initrd.img" \
            -append "console=ttyS0 root=/dev/vda rw${args:+ $args}" \
            -drive "file=$VM_RUN/disk.qcow2,format=qcow2,if=virtio" \
            -drive "file=$VM_RUN/payload.img,format=raw,if=virtio,readonly=on" \
            -nic "$nic" \
            -display none -chardev "file,id=serial0,path=$log,append=on" -serial chardev:serial0 \
            -monitor "unix:$VM_RUN/monitor.sock,server=on,wait=off" \
            -pidfile "$VM_RUN/qemu.pid" -daemonize 2>&1); then
            VM_PID=$(cat "$VM_RUN/qemu.pid")
            break
        fi
        if [[ $err == *"host forwarding"* ]] && ((VM_BOOTS == 1)); then
            # Someone took a port before the guest used it: choose again.
            VM_SSH_PORT=
            for p in "${!VM_FORWARDS[@]}"; do
                VM_FORWARDS[p]=
            done
            continue
        fi
        vm_die "qemu did not start: $err"
    done
    vm_alive || vm_die "qemu did not start: $err"
    VM_SSH_OPTS=(-F /dev/null -i "$VM_RUN/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes
        -o HostKeyAlias="$VM_HOST_ALIAS" -o HostKeyAlgorithms=ssh-ed25519
        -o UserKnownHostsFile="$VM_RUN/known_hosts" -o GlobalKnownHostsFile=/dev/null
        -o StrictHostKeyChecking=yes -o ConnectTimeout=10 -o ServerAliveInterval=10
        -o ServerAliveCountMax=6 -o LogLevel=ERROR -p "$VM_SSH_PORT")
}

# The port of the Nth vm_forward (from 0), once booted.
vm_port() { printf '%s' "${VM_FORWARDS[$1]}"; }

vm_ssh() {
    ssh "${VM_SSH_OPTS[@]}" root@127.0.0.1 -- "$@"
}

# Waits up to $1 seconds for sshd, in a boot other than $2 when given.
# Fails at once when qemu is gone.
vm_wait_ssh() {
    local secs=$1 old=${2:-} deadline id
    [[ $VM_NIC != none ]] || {
        vm_log "vm_wait_ssh: the guest has no network device (VM_NIC=none)"
        return 1
    }
    deadline=$((SECONDS + secs))
    while ((SECONDS < deadline)); do
        vm_alive || {
            vm_log "qemu exited while waiting for the guest; serial log: $VM_RUN/serial.log"
            return 1
        }
        if id=$(vm_ssh cat /proc/sys/kernel/random/boot_id 2>/dev/null) && [[ -n $id && $id != "$old" ]]; then
            return 0
        fi
        sleep 2
    done
    vm_log "no ssh from the guest within ${secs}s; serial log: $VM_RUN/serial.log"
    return 1
}

vm_boot_id() { vm_ssh cat /proc/sys/kernel/random/boot_id; }

# `systemctl reboot` in the guest; qemu resets the machine itself (same
# process, same disks and ports). Waits up to $1 seconds for the new boot.
vm_reboot() {
    local secs=${1:-600} old
    old=$(vm_boot_id) || return 1
    vm_ssh systemctl reboot || true
    vm_wait_ssh "$secs" "$old"
}

# Power loss: qemu killed, nothing flushed by the guest.
vm_kill() {
    vm_alive || return 0
    kill -KILL "$VM_PID" 2>/dev/null || true
    while kill -0 "$VM_PID" 2>/dev/null; do sleep 0.2; done
    VM_PID=
}

# Until qemu exits because the guest powered itself off, up to $1 seconds;
# fails (leaving it running) when it does not.
vm_wait_off() {
    local secs=$1 deadline
    deadline=$((SECONDS + secs))
    while vm_alive && ((SECONDS < deadline)); do sleep 1; done
    if vm_alive; then
        vm_log "the guest did not power off within ${secs}s; serial log: $VM_RUN/serial.log"
        return 1
    fi
    VM_PID=
}

# Clean power off, waited up to $1 seconds; killed after that.
vm_poweroff() {
    local secs=${1:-180} deadline
    vm_alive || return 0
    [[ $VM_NIC == none ]] || vm_ssh systemctl poweroff >/dev/null 2>&1 || true
    deadline=$((SECONDS + secs))
    while vm_alive && ((SECONDS < deadline)); do sleep 1; done
    if vm_alive; then
        vm_log "the guest did not power off within ${secs}s; killing qemu (pid $VM_PID)"
        vm_kill
        return 1
    fi
    VM_PID=
}

vm_finish() {
    if vm_alive; then
        vm_poweroff 120 || true
    fi
    if [[ -n $VM_RUN && -d $VM_RUN ]]; then
        if [[ $VM_KEEP == 1 ]]; then
            vm_log "kept the run directory $VM_RUN (MIRROR_REGISTRY_VM_KEEP=1)"
        else
            rm -rf -- "$VM_RUN"
        fi
    fi
    VM_RUN= VM_PID= VM_SSH_PORT= VM_BOOTS=0 VM_POWERED_ON_AT=
    VM_FORWARDS=()
    VM_SSH_OPTS=()
}

vm_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    vm_finish
    # The sourcing script's own clean-up, when it defines one.
    if declare -F vm_on_exit >/dev/null; then vm_on_exit || true; fi
    exit "$rc"
}
