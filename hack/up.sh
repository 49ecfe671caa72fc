#!/usr/bin/env bash
# One command, offline: prepare this host, build, and bring up a registry
# with `mrctl install`: the CNCF distribution registry (its image built
# locally by setup-host.sh, so nothing is fetched), the controller installed
# as a systemd unit that keeps it converged. Safe to run again. Extra
# arguments go to `mrctl install` (e.g. --quayHostname host:port).
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."

hack/setup-host.sh
# shellcheck source=hack/env.sh
. hack/env.sh

echo "==> building (release)"
cargo build --release --locked --bins
install -m 0755 target/release/mirror-registry-controller target/release/mrctl /usr/local/bin/

echo "==> installing (${MIRROR_REGISTRY_SCOPE:-system} scope)"
exec /usr/local/bin/mrctl install --name mirror --engine distribution "$@"
