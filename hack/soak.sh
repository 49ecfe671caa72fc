#!/usr/bin/env bash
# The long run of tests/sequences.rs: many random sequences of user actions
# against the real controller on this host, each checked against the
# promises after every step. Writes docs/soak.md with what ran and what
# failed. Not part of hack/test.sh (which runs a few sequences).
#
#   hack/soak.sh                 # 300 sequences of 15 steps, or 40 minutes
#   SOAK_COUNT=500 SOAK_STEPS=20 SOAK_BUDGET=2h SOAK_SEED=42 hack/soak.sh
#   SOAK_WITHOUT=SecondController hack/soak.sh   # leave an action out
#
# A failed sequence does not stop the run; each is listed in docs/soak.md
# with the command that replays it. Exit 1 when any failed.
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."

count=${SOAK_COUNT:-300}
steps=${SOAK_STEPS:-15}
budget=${SOAK_BUDGET:-40m}
seed=${SOAK_SEED:-$(date +%s)}
without=${SOAK_WITHOUT:-}
out=${SOAK_OUT:-docs/soak.md}

hack/setup-host.sh >/dev/null
# shellcheck source=hack/env.sh
. hack/env.sh
cargo build --tests --bins --quiet

report=$(mktemp /tmp/mr-soak-XXXXXX.jsonl)
log=${report%.jsonl}.log
trap 'rm -f "$report"' EXIT
start=$(date -u +'%Y-%m-%d %H:%M UTC')
t0=$(date +%s)
set +e
MR_SEQ_SEED=$seed MR_SEQ_COUNT=$count MR_SEQ_STEPS=$steps MR_SEQ_BUDGET=$budget \
    MR_SEQ_KEEP_GOING=1 MR_SEQ_REPORT=$report MR_SEQ_WITHOUT=$without \
    cargo test --quiet --test sequences random_user_sequences -- --nocapture >"$log" 2>&1
status=$?
set -e
secs=$(( $(date +%s) - t0 ))

python3 - "$report" "$out" "$seed" "$count" "$steps" "$budget" "$start" "$secs" "$without" "$(git rev-parse --short HEAD)" <<'EOF'
import json, sys
report, out, seed, count, steps, budget, start, secs, without, commit = sys.argv[1:]
rows = [json.loads(l) for l in open(report) if l.strip()]
ran = len(rows)
total_steps = sum(r["steps"] for r in rows)
failed = [r for r in rows if not r["ok"]]
secs = int(secs)
lines = [
    "# Soak run of the user-sequence test",
    "",
    "Written by `hack/soak.sh`, which runs `tests/sequences.rs` with large",
    "counts: random sequences of what users do (apply, edit, rename and copy",
    "spec files, remove, `mrctl delete`, `uninstall` with and without",
    "`--autoApprove`, `install` again, push, the user's own files and",
    "directories, controller restarts and SIGKILLs, units stopped and",
    "containers removed by hand) against the real controller on this host,",
    "every promise checked after every step. Run it again to refresh this",
    "page.",
    "",
    "| | |",
    "|---|---|",
    f"| Date | {start} |",
    f"| Commit | {commit} |",
    f"| Seed | `MR_SEQ_SEED={seed}` |",
    f"| Asked for | {count} sequences of {steps} steps, budget {budget} |",
    f"| Left out | {without or 'nothing'} |",
    f"| Sequences run | {ran} |",
    f"| Steps run | {total_steps} |",
    f"| Failed sequences | {len(failed)} |",
    f"| Duration | {secs // 60} min {secs % 60} s |",
    "",
]
if failed:
    lines += ["## Failures", ""]
    for r in failed:
        first = (r["failure"] or "").split("\n")[0]
        lines += [
            f"### Sequence {r['index']} ({r['steps']} steps)",
            "",
            f"Replay: `MR_SEQ_SEED={seed} MR_SEQ_INDEX={r['index']} MR_SEQ_STEPS={steps} cargo test --test sequences random_user_sequences -- --nocapture`",
            "",
            "```",
            first,
            "```",
            "",
        ]
        steps_block = (r["failure"] or "").split("steps (as Rust, for a regression test):\n")
        if len(steps_block) > 1:
            lines += ["```rust", steps_block[1].split("\n\nnotes:")[0], "```", ""]
else:
    lines += ["No sequence failed.", ""]
open(out, "w").write("\n".join(lines))
print(f"{ran} sequences, {total_steps} steps, {len(failed)} failed, {secs} s: {out}")
EOF
echo "full log: $log"
exit "$status"
