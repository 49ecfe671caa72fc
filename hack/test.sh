#!/usr/bin/env bash
# The project's test command: prepare the host (idempotent), then run every
# test against it. Extra arguments go to the test binaries, e.g. a name filter.
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
hack/setup-host.sh --test-tools
# shellcheck source=hack/env.sh
. hack/env.sh
exec cargo test --workspace -- --test-threads=2 "$@"
