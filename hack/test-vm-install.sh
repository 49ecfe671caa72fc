#!/usr/bin/env bash
# The original's install paths in a booted guest (hack/vm/install-paths.sh,
# run by hack/test-vm.sh as tests I1, I3 and I2): from an unpacked bundle on this
# host, `mrctl install --targetHostname 127.0.0.1:SSHPORT --targetUsername
# root -k KEY` after bad input (each a clear error, nothing left on the
# target), push with TLS verified through the CA mrctl saved, upgrade keeping
# data and credentials, uninstall; then a boot with no network device at all,
# where `./mrctl install` loads the archive beside it. hack/test.sh runs them
# on the Debian 13 guest; this runs only them, on Debian 13 unless
# MIRROR_REGISTRY_VM_DEBIAN says otherwise. Usage: hack/test-vm-install.sh
# (as root).
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
exec hack/test-vm.sh --debian "${MIRROR_REGISTRY_VM_DEBIAN:-13}" --tests I1,I3,I2 "$@"
