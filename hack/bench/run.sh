#!/usr/bin/env bash
# Benchmarks, run on demand (not part of hack/test.sh or CI): builds the
# release binaries, makes sure htpasswd (the baseline's) is installed, and
# runs hack/bench/bench.py, which prints a markdown table and writes
# docs/benchmarks.md. Arguments go to bench.py (--help lists them).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/../.."

if ! command -v htpasswd >/dev/null; then
    echo "installing apache2-utils (htpasswd, for the by-hand baseline)" >&2
    apt-get install -y -q apache2-utils >/dev/null
fi
cargo build --release --bins
# shellcheck source=/dev/null
. hack/env.sh
exec python3 hack/bench/bench.py "$@"
