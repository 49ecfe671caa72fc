#!/usr/bin/env bash
# The original's install paths in a booted Debian guest (hack/vm/image.sh),
# two boots of one disk:
#
#  boot 1 (a user-mode NIC, sshd forwarded to 127.0.0.1): `mrctl install
#    --targetHostname 127.0.0.1:SSHPORT --targetUsername root -k KEY` from
#    this host, run from an unpacked bundle; bad input first (a wrong key, an
#    unknown host key, a user without root rights, an unreachable port, a
#    target without podman), each a clear error and nothing left under
#    /opt/mirror-registry; then install, push from this host with TLS
#    verified through the CA mrctl saved, upgrade to another image keeping
#    data and credentials, uninstall. Last, a one-shot unit is left that
#    runs the offline test at the next boot.
#  boot 2 (-nic none: no network device at all): the unit unpacks the
#    bundle from the payload disk, runs `./mrctl install`, which finds the
#    image archive beside itself, and waits for Ready; it prints its
#    results on the serial console and powers off.
#
# Every check prints "ok:" or "not ok:"; exit 1 when any failed. MEASURE
# lines are figures (TCG-emulated guest). Usage: hack/test-vm-install.sh
# (as root). MIRROR_REGISTRY_VM_KEEP=1 keeps the run directory;
# MIRROR_REGISTRY_VM_INSTALL_OFFLINE=0 stops after boot 1.
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
# shellcheck source=hack/vm/lib.sh
. hack/vm/lib.sh

NAME=quay
BOOT_TIMEOUT=900
OFFLINE_TIMEOUT=1500
REGISTRY=localhost/mirror-registry/distribution:2.8
REGISTRY_NEXT=docker.io/library/registry:2
PAUSE=localhost/mirror-registry/pause:latest
TESTIMAGE=localhost/mirror-registry/testimage:latest
FAILED=0
T_START=$(vm_now)

ok() { printf '    ok: %s\n' "$*"; }
not_ok() {
    printf '    not ok: %s\n' "$*"
    FAILED=1
}
measure() { printf 'MEASURE %s: %s s\n' "$1" "$2"; }
step() { printf '\n== %s (%ss)\n' "$*" "$(vm_since "$T_START")"; }

# mrctl from the unpacked bundle, against the guest over ssh.
remote() {
    "$BUNDLE/mrctl" "$@"
}

# `mrctl VERB` through ssh that must fail naming $1; nothing may be left.
expect_refused() {
    local what=$1 want=$2 out t0
    shift 2
    t0=$(vm_now)
    if out=$("$@" 2>&1); then
        not_ok "$what: succeeded"
    elif grep -qi -- "$want" <<<"$out"; then
        ok "$what: refused in $(vm_since "$t0")s: $(grep -i -m1 -- "$want" <<<"$out")"
    else
        not_ok "$what: refused without naming '$want': $out"
    fi
    if vm_ssh test -e /opt/mirror-registry; then
        not_ok "$what: /opt/mirror-registry left on the target"
        vm_ssh rm -rf /opt/mirror-registry
    fi
}

main() {
    step "host: release binaries, the bundle and the guest image"
    cargo build --release --locked --bin mrctl --bin mirror-registry-controller >/dev/null 2>&1 ||
        vm_die "cargo build --release failed"
    vm_init
    local p t0 secs
    p=$(vm_payload)
    t0=$(vm_now)
    target/release/mrctl bundle -o "$p/mirror-registry-bundle.tar.gz" --engine distribution \
        --registryImage "$REGISTRY" --pauseImage "$PAUSE" >"$VM_RUN/bundle.out" ||
        vm_die "mrctl bundle failed: $(cat "$VM_RUN/bundle.out")"
    measure "mrctl bundle (distribution, release binaries)" "$(vm_since "$t0")"
    # A second bundle with another registry image, for upgrade, and another
    # controller binary (the same program, bytes appended: another file),
    # which the upgrade must restart the controller onto.
    cp target/release/mirror-registry-controller "$VM_RUN/controller-next"
    printf '\nnext\n' >>"$VM_RUN/controller-next"
    target/release/mrctl bundle -o "$VM_RUN/next.tar.gz" --engine distribution \
        --registryImage "$REGISTRY_NEXT" --pauseImage "$PAUSE" \
        --controller-bin "$VM_RUN/controller-next" >/dev/null ||
        vm_die "mrctl bundle (next) failed"
    BUNDLE=$VM_RUN/bundle
    NEXT=$VM_RUN/next
    mkdir -p "$BUNDLE" "$NEXT"
    tar -C "$BUNDLE" -xzf "$p/mirror-registry-bundle.tar.gz"
    tar -C "$NEXT" -xzf "$VM_RUN/next.tar.gz"
    offline_script >"$p/offline-install.sh"
    chmod 0755 "$p/offline-install.sh"
    vm_forward
    step "boot 1 (network: ssh forwarded)"
    vm_boot
    REG_PORT=$(vm_port 0)
    vm_wait_ssh "$BOOT_TIMEOUT" || vm_die "the guest did not come up"
    measure "boot 1: power on to sshd" "$(vm_since "$VM_POWERED_ON_AT")"

    local key=$VM_RUN/id_ed25519
    # The guest's host key in this user's known_hosts, as after a first
    # interactive ssh (ssh reads the passwd entry's home, not $HOME); the
    # entry is removed again on exit.
    KNOWN="[127.0.0.1]:$VM_SSH_PORT"
    trust_guest() {
        mkdir -p ~/.ssh && chmod 0700 ~/.ssh
        printf '%s %s\n' "$KNOWN" "$(cut -d ' ' -f 1,2 <"$VM_IMAGE/ssh_host_ed25519_key.pub")" >>~/.ssh/known_hosts
    }
    untrust_guest() { ssh-keygen -q -R "$KNOWN" >/dev/null 2>&1 || true; }
    # vm_cleanup exits with the status it finds in $?.
    trap 'rc=$?; untrust_guest; rm -rf "/etc/containers/certs.d/localhost:$REG_PORT"; (exit $rc); vm_cleanup' EXIT
    trust_guest
    local target=(--targetHostname "127.0.0.1:$VM_SSH_PORT" --targetUsername root)

    step "bad input, each refused with nothing left on the target"
    t0=$(vm_now)
    expect_refused "a file in a flag missing on this host" "sslCert $VM_RUN/none.crt: cannot read it on this host" \
        remote install "${target[@]}" -k "$key" --engine distribution --sslCert "$VM_RUN/none.crt" --sslKey "$VM_RUN/none.key"
    ssh-keygen -q -t ed25519 -N '' -f "$VM_RUN/wrong_key"
    expect_refused "a wrong key" "authentication failed" \
        remote install "${target[@]}" -k "$VM_RUN/wrong_key" --engine distribution
    untrust_guest
    expect_refused "an unknown host key" "host key is not known" \
        remote install "${target[@]}" -k "$key" --engine distribution
    trust_guest
    vm_ssh 'id mrnoroot >/dev/null 2>&1 || useradd -m mrnoroot; install -d -m 0700 -o mrnoroot ~mrnoroot/.ssh; cp /mnt/payload/ssh/authorized_keys ~mrnoroot/.ssh/; chown mrnoroot ~mrnoroot/.ssh/authorized_keys'
    expect_refused "a user without root rights" "no root rights" \
        remote install --targetHostname "127.0.0.1:$VM_SSH_PORT" --targetUsername mrnoroot -k "$key" --engine distribution
    expect_refused "a port nothing listens on" "connection refused" \
        remote install --targetHostname "127.0.0.1:$(vm_free_port)" --targetUsername root -k "$key" --engine distribution
    # TEST-NET-2: no answer (dropped, or a connection that never speaks).
    expect_refused "a host that does not answer" "unreachable" \
        remote install --targetHostname 198.51.100.1 --targetUsername root -k "$key" --engine distribution
    vm_ssh 'mv /usr/bin/podman /usr/bin/podman.hidden'
    expect_refused "a target without podman" "podman is not installed" \
        remote install "${target[@]}" -k "$key" --engine distribution
    vm_ssh 'mv /usr/bin/podman.hidden /usr/bin/podman'
    measure "bad input: 7 refusals" "$(vm_since "$t0")"

    step "install over ssh"
    t0=$(vm_now)
    if remote install "${target[@]}" -k "$key" --name "$NAME" --engine distribution \
        --quayHostname "localhost:$REG_PORT" </dev/null >"$VM_RUN/install.out" 2>&1; then
        ok "mrctl install --targetHostname: Ready in $(vm_since "$t0")s"
    else
        not_ok "mrctl install --targetHostname failed"
    fi
    sed 's/\(Password: *\).*/\1(printed)/' "$VM_RUN/install.out" | sed 's/^/      | /'
    measure "install over ssh: copy, install, Ready" "$(vm_since "$t0")"
    local ca=/etc/containers/certs.d/localhost:$REG_PORT/ca.crt user pw auth=$VM_RUN/auth.json
    [[ -f $ca ]] && ok "CA saved to $ca" || not_ok "no CA at $ca"
    user=$(sed -n 's/^ *Username: *//p' "$VM_RUN/install.out")
    pw=$(sed -n 's/^ *Password: *//p' "$VM_RUN/install.out")
    if printf '%s' "$pw" | podman login --authfile "$auth" -u "$user" --password-stdin "localhost:$REG_PORT" >/dev/null 2>&1; then
        ok "podman login with TLS verified"
    else
        not_ok "podman login"
    fi
    t0=$(vm_now)
    if skopeo --command-timeout 120s copy -q --authfile "$auth" "containers-storage:$TESTIMAGE" \
        "docker://localhost:$REG_PORT/test/image:1" 2>"$VM_RUN/push.err"; then
        ok "pushed from this host"
    else
        not_ok "push: $(cat "$VM_RUN/push.err")"
    fi
    measure "push from this host (TLS verified)" "$(vm_since "$t0")"

    step "upgrade over ssh to another image (the bundle's, found beside mrctl)"
    local pid_before pid_after unit=mirror-registry-controller.service
    pid_before=$(vm_ssh "systemctl show -p MainPID --value $unit")
    t0=$(vm_now)
    if "$NEXT/mrctl" upgrade "${target[@]}" -k "$key" --name "$NAME" \
        </dev/null >"$VM_RUN/upgrade.out" 2>&1; then
        ok "mrctl upgrade --targetHostname in $(vm_since "$t0")s"
    else
        not_ok "upgrade failed: $(tail -5 "$VM_RUN/upgrade.out")"
    fi
    sed 's/^/      | /' "$VM_RUN/upgrade.out"
    measure "upgrade over ssh: copy, load, Ready" "$(vm_since "$t0")"
    pid_after=$(vm_ssh "systemctl show -p MainPID --value $unit")
    if [[ $pid_after != "$pid_before" && $pid_after != 0 ]] &&
        vm_ssh "readlink /proc/$pid_after/exe" | grep -qvF '(deleted)' &&
        vm_ssh "cmp -s /proc/$pid_after/exe /opt/mirror-registry/mirror-registry-controller"; then
        ok "the controller restarted onto the new binary (pid $pid_before -> $pid_after)"
    else
        not_ok "the controller still runs the old binary (pid $pid_before -> $pid_after)"
    fi
    if vm_ssh "podman inspect --format '{{.ImageName}}' $NAME-registry" | grep -qF "$REGISTRY_NEXT"; then
        ok "the registry runs $REGISTRY_NEXT"
    else
        not_ok "the registry does not run $REGISTRY_NEXT"
    fi
    if skopeo --command-timeout 60s inspect --authfile "$auth" "docker://localhost:$REG_PORT/test/image:1" >/dev/null 2>&1; then
        ok "the pushed image and the credentials survived the upgrade"
    else
        not_ok "the pushed image is gone or the credentials changed"
    fi

    step "uninstall over ssh"
    t0=$(vm_now)
    if remote uninstall "${target[@]}" -k "$key" --name "$NAME" </dev/null >"$VM_RUN/uninstall.out" 2>&1; then
        ok "mrctl uninstall --targetHostname"
    else
        not_ok "uninstall failed: $(tail -5 "$VM_RUN/uninstall.out")"
    fi
    if vm_ssh "test ! -e /etc/systemd/system/$NAME-registry.service"; then
        ok "its units are gone"
    else
        not_ok "units left"
    fi
    measure "uninstall over ssh" "$(vm_since "$t0")"
    rm -rf "/etc/containers/certs.d/localhost:$REG_PORT"
    # Boot 2 starts from nothing: no images (so the archive must be
    # loaded), no copied files.
    vm_ssh "podman rmi -f $REGISTRY $REGISTRY_NEXT $PAUSE >/dev/null 2>&1; rm -rf /opt/mirror-registry; podman images --format '{{.Repository}}:{{.Tag}}'" >"$VM_RUN/images-left"
    if grep -qF -e "$REGISTRY" -e "$PAUSE" "$VM_RUN/images-left"; then
        not_ok "the bundle's images are still in the guest: $(tr '\n' ' ' <"$VM_RUN/images-left")"
    fi

    if [[ ${MIRROR_REGISTRY_VM_INSTALL_OFFLINE:-1} == 0 ]]; then
        printf '\n== boot 2 skipped (MIRROR_REGISTRY_VM_INSTALL_OFFLINE=0)\n'
        printf '\n%s (%ss)\n' "$([[ $FAILED == 0 ]] && echo PASS || echo FAIL)" "$(vm_since "$T_START")"
        exit "$FAILED"
    fi
    step "boot 2: no network device"
    vm_ssh 'cat >/etc/systemd/system/mr-offline-install.service <<EOF
[Unit]
Description=offline install test
# As an admin who logs in once the boot is done: with no network device,
# systemd-networkd-wait-online takes its full 2 minutes to give up, and
# the controller unit (After=network-online.target) would wait for it.
Wants=network-online.target
After=multi-user.target network-online.target
[Service]
Type=oneshot
StandardOutput=journal+console
StandardError=journal+console
ExecStart=/mnt/payload/offline-install.sh
ExecStopPost=/bin/systemctl --no-block poweroff
[Install]
WantedBy=multi-user.target
EOF
systemctl enable mr-offline-install.service >/dev/null 2>&1'
    vm_poweroff 300 || true
    vm_boot_nonet
    t0=$(vm_now)
    vm_wait_off "$OFFLINE_TIMEOUT" || not_ok "the offline guest did not power off within ${OFFLINE_TIMEOUT}s"
    measure "boot 2 (no network): power on to power off" "$(vm_since "$t0")"
    grep -a 'OFFLINE ' "$VM_RUN/serial.log" | sed 's/^.*OFFLINE /    /'
    grep -aq 'OFFLINE ok: Ready' "$VM_RUN/serial.log" || not_ok "offline install: not Ready"
    grep -aq 'OFFLINE not ok' "$VM_RUN/serial.log" && FAILED=1

    printf '\n%s (%ss)\n' "$([[ $FAILED == 0 ]] && echo PASS || echo FAIL)" "$(vm_since "$T_START")"
    exit "$FAILED"
}

# The guest's side of boot 2.
offline_script() {
    cat <<'EOS'
#!/bin/bash
say() { printf 'OFFLINE %s\n' "$*"; }
links=$(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')
[[ $links == "lo " ]] && say "ok: no network device (links: $links)" || say "not ok: network devices: $links"
d=/root/offline && rm -rf "$d" && mkdir -p "$d" && cd "$d" || exit 1
tar -xzf /mnt/payload/mirror-registry-bundle.tar.gz
t0=$(date +%s)
if ./mrctl install --name offline --engine distribution --quayHostname localhost:9555 </dev/null >install.out 2>&1; then
    say "ok: Ready after $(( $(date +%s) - t0 ))s"
else
    say "not ok: install failed"
    journalctl -b --no-pager -u mirror-registry-controller.service | tail -n 40 | sed 's/^/OFFLINE   journal| /'
fi
sed -e 's/\(Password: *\).*/\1(printed)/' -e 's/^/OFFLINE   | /' install.out
grep -q 'image archive beside mrctl' install.out && say "ok: the archive beside mrctl was found" || say "not ok: archive not found"
grep -q '100%' install.out && say "ok: load progress shown" || say "not ok: no load progress"
EOS
}

main "$@"
