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
# The guests: Debian 12 here (every guest test); the Debian 13 (podman 5)
# subset and the install-path guests (hack/test-vm-install.sh) run on
# demand: `hack/test-vm.sh --debian 13`, `hack/test-vm-install.sh`, so CI
# keeps within its time.
if (($# == 0)) && [[ ${MIRROR_REGISTRY_VM_TESTS:-1} != 0 ]]; then
    hack/test-vm.sh --debian "${MIRROR_REGISTRY_VM_DEBIAN:-12}"
fi
