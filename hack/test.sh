#!/usr/bin/env bash
# The project's test command: prepare the host (idempotent), then run every
# test against it: clippy and `cargo test`, and beside them the guest tests
# (hack/test-vm.sh: booted Debian 12 and 13 guests, system scope, reboots,
# the original's install paths). Extra arguments go to the test binaries,
# e.g. a name filter; with them, or with MIRROR_REGISTRY_VM_TESTS=0, only
# cargo test runs.
#
# The guests are emulated (TCG) and take most of the time, so they start as
# soon as there is something to put into them: the guest images are built
# while the binaries compile, and the guests boot with those binaries (the
# dev build, MIRROR_REGISTRY_VM_PROFILE=dev) while clippy and the host tests
# run.
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
hack/setup-host.sh --test-tools
# shellcheck source=hack/env.sh
. hack/env.sh
if (($# > 0)) || [[ ${MIRROR_REGISTRY_VM_TESTS:-1} == 0 ]]; then
    exec cargo test --workspace -- --test-threads=2 "$@"
fi

logs=$(mktemp -d "${TMPDIR:-/tmp}/mirror-registry-test.XXXXXX")
vm_pid=
trap 'kill "${vm_pid:-}" 2>/dev/null || true; rm -rf -- "$logs"' EXIT
echo "==> guest images (hack/vm/image.sh), beside the build"
(hack/vm/image.sh --debian 12 && hack/vm/image.sh --debian 13) >"$logs/images" 2>&1 &
images_pid=$!
cargo build --workspace --locked --bins
images_rc=0
wait "$images_pid" || images_rc=$?
cat "$logs/images"
((images_rc == 0)) || {
    echo "error: hack/vm/image.sh failed" >&2
    exit 1
}

echo "==> guest tests (hack/test-vm.sh, both guests), beside clippy and cargo test; lines prefixed [guests]"
{
    rc=0
    MIRROR_REGISTRY_VM_PROFILE=dev MIRROR_REGISTRY_VM_BUILD=0 hack/test-vm.sh --debian both || rc=$?
    echo "$rc" >"$logs/vm_rc"
} 2>&1 | sed -u 's/^/[guests] /' &
vm_pid=$!
clippy_rc=0
cargo clippy --workspace --all-targets --locked -- -D warnings || clippy_rc=$?
test_rc=0
cargo test --workspace --locked --no-fail-fast -- --test-threads=2 || test_rc=$?
echo "==> clippy: exit $clippy_rc; cargo test: exit $test_rc; waiting for the guest tests"
wait "$vm_pid" || true
vm_pid=
vm_rc=$(cat "$logs/vm_rc" 2>/dev/null || echo "none (the guest tests did not finish)")
echo "==> clippy: exit $clippy_rc; cargo test: exit $test_rc; guest tests: exit $vm_rc"
[[ $clippy_rc == 0 && $test_rc == 0 && $vm_rc == 0 ]]
