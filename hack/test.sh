#!/usr/bin/env bash
# The project's test command: prepare the host (idempotent), then run every
# test against it: `cargo test`, then the guest tests (hack/test-vm.sh: a
# booted Debian guest, system scope, reboots). Extra arguments go to the test
# binaries, e.g. a name filter; with them, or with MIRROR_REGISTRY_VM_TESTS=0,
# the guest tests are left out.
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
hack/setup-host.sh --test-tools
# shellcheck source=hack/env.sh
. hack/env.sh
cargo test --workspace -- --test-threads=2 "$@"
if (($# == 0)) && [[ ${MIRROR_REGISTRY_VM_TESTS:-1} != 0 ]]; then
    hack/test-vm.sh
fi
# The original's install paths in a guest (bundle offline, install over
# SSH): hack/test-vm-install.sh. A separate line, so it can be kept or moved.
if (($# == 0)) && [[ ${MIRROR_REGISTRY_VM_TESTS:-1} != 0 && ${MIRROR_REGISTRY_VM_INSTALL_TESTS:-1} != 0 ]]; then
    hack/test-vm-install.sh
fi
