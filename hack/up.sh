#!/usr/bin/env bash
# One command, offline: prepare this host, build, and bring up a registry
# with `mrctl install`: the CNCF distribution registry (its image built
# locally by setup-host.sh, so nothing is fetched), the controller installed
# as a systemd unit that keeps it converged. Safe to run again. Extra
# arguments go to `mrctl install` (e.g. --quayHostname host:port). Where
# systemd is PID 1 that is system scope (units in /etc/systemd/system); a
# host without cargo uses the binaries already in target/release.
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."

hack/setup-host.sh
# shellcheck source=hack/env.sh
. hack/env.sh

echo "==> building (release)"
if command -v cargo >/dev/null; then
    cargo build --release --locked --bins
elif [[ -x target/release/mrctl && -x target/release/mirror-registry-controller ]]; then
    # A tree with its binaries built elsewhere (an air-gapped host).
    echo "cargo not found: using the binaries in target/release"
else
    echo "error: cargo not found, and target/release holds no mrctl and mirror-registry-controller" >&2
    exit 1
fi
install -m 0755 target/release/mirror-registry-controller target/release/mrctl /usr/local/bin/

echo "==> installing (${MIRROR_REGISTRY_SCOPE:-system} scope)"
exec /usr/local/bin/mrctl install --name mirror --engine distribution "$@"
