# shellcheck shell=bash
# Put in front of every script hack/test-vm.sh runs in the guest (as root,
# over ssh, with sshd's environment only). A check prints "ok: ..." or
# "not ok: ..."; the script's exit status is 1 when any check failed.
# MEASURE lines are the figures docs/benchmarks.md records.
set -u
# shellcheck disable=SC2034 # read by the script's last line
FAILED=0

ok() { printf '    ok: %s\n' "$*"; }
not_ok() {
    printf '    not ok: %s\n' "$*"
    # shellcheck disable=SC2034
    FAILED=1
}
# check WHAT COMMAND...: ok when COMMAND succeeds.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}
# check_eq WHAT ACTUAL EXPECTED
check_eq() {
    if [[ $2 == "$3" ]]; then ok "$1 ($2)"; else not_ok "$1: got '$2', want '$3'"; fi
}
# check_has WHAT TEXT NEEDLE: TEXT contains NEEDLE.
check_has() {
    if [[ $2 == *"$3"* ]]; then ok "$1"; else not_ok "$1: '$3' not in: $2"; fi
}
quiet() { "$@" >/dev/null 2>&1; }
measure() { printf '    MEASURE %s: %s s\n' "$1" "$2"; }
show() { sed 's/^/      | /'; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# wait_for SECS COMMAND...: until COMMAND succeeds, polled every second
# (each poll costs the emulated CPU the controller is using).
wait_for() {
    local secs=$1 deadline
    shift
    deadline=$(($(date +%s) + secs))
    while (($(date +%s) < deadline)); do
        "$@" && return 0
        sleep 1
    done
    "$@"
}

# serving HOST:PORT CA: /v2/ answers 401 (it wants credentials) over TLS
# verified against CA.
serving() {
    [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$2" "https://$1/v2/" 2>/dev/null || true)" == 401 ]]
}

status_of() { mrctl get "$1" -o json 2>/dev/null | jq -r "$2" 2>/dev/null || true; }
phase() { status_of "$1" '.status.phase // ""'; }
is_phase() { [[ "$(phase "$1")" == "$2" ]]; }
# "STATUS REASON: MESSAGE" of condition $2 of registry $1.
condition() {
    status_of "$1" ".status.conditions[]? | select(.type == \"$2\") | \"\\(.status) \\(.reason): \\(.message)\""
}
condition_has() { [[ "$(condition "$1" "$2")" == *"$3"* ]]; }

unit_prop() { systemctl show -P "$2" "$1" 2>/dev/null || true; }
container_id() { podman inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
container_running() { [[ "$(podman inspect --format '{{.State.Running}}' "$1" 2>/dev/null || true)" == true ]]; }
