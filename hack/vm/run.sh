#!/usr/bin/env bash
# Boot the guest image (hack/vm/image.sh builds it when its inputs changed),
# wait for it, run a command in it, print its output, and power it off.
# Every run starts from the clean image (a copy-on-write disk of its own).
#
# Usage: hack/vm/run.sh [--debian 12|13] [--forward] [--boot-timeout SECS] [-- COMMAND...]
#   COMMAND      run by the guest's shell as root; its exit status is
#                run.sh's. Without one: an interactive shell when on a
#                terminal.
#   --debian N   which guest: 12 (podman 4.3, the default) or 13 (podman 5);
#                also MIRROR_REGISTRY_VM_DEBIAN
#   --forward    also forward a free port P of 127.0.0.1 to the guest's P
#                (printed)
#   --boot-timeout SECS   bound on boot to sshd (default 600: TCG is slow)
# MIRROR_REGISTRY_VM_KEEP=1 keeps the run directory (disk, serial log); see
# hack/vm/lib.sh for the other variables.
set -euo pipefail

# shellcheck source=hack/vm/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

main() {
    local boot_timeout=600 forward=0 t0 rc=0
    while (($# > 0)); do
        case $1 in
        --forward) forward=1 ;;
        --debian)
            VM_DEBIAN=${2:?--debian needs 12 or 13}
            shift
            ;;
        --boot-timeout)
            boot_timeout=${2:?--boot-timeout needs a value}
            shift
            ;;
        --)
            shift
            break
            ;;
        -h | --help)
            sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
            return 0
            ;;
        *) vm_die "unknown argument: $1 (see --help)" ;;
        esac
        shift
    done
    vm_init
    ((forward)) && vm_forward
    t0=$(vm_now)
    vm_boot
    vm_log "==> guest booting (qemu pid $VM_PID, ssh on 127.0.0.1:$VM_SSH_PORT${VM_FORWARDS[0]:+, forward 127.0.0.1:${VM_FORWARDS[0]}})"
    vm_wait_ssh "$boot_timeout" || exit 1
    vm_log "==> guest answers ssh after $(vm_since "$t0")s"
    if (($# > 0)); then
        vm_ssh "$*" || rc=$?
    elif [[ -t 0 ]]; then
        ssh -t "${VM_SSH_OPTS[@]}" root@127.0.0.1 || rc=$?
    fi
    vm_log "==> powering off"
    vm_poweroff || true
    exit "$rc"
}

main "$@"
