#!/usr/bin/env bash
# Prepare a Debian 12 host for building, testing and running mirror-registry:
#   - the packages (podman, runc, skopeo, the distribution registry, redis,
#     busybox);
#   - containers.conf overrides, only where this host needs them;
#   - podman's API socket under a systemd manager: the system manager when
#     systemd is PID 1, otherwise a `systemd --user` manager started here
#     (with its session bus; both outlive this script);
#   - the local images tests use, built offline from Debian's binaries;
#   - with --test-tools, the Python tools tests use (hack/test-tools.txt),
#     in a venv outside the repository; the one step that needs PyPI; and
#     what the observability test drives: Debian's prometheus and chromium,
#     and playwright-core (npm, hack/browser) for chromium;
#   - hack/.host.env, which hack/env.sh sources.
#
# Idempotent: every step prints "changed: ..." or "in place: ...".
# Usage: hack/setup-host.sh [--rebuild] [--test-tools]
#   --rebuild: rebuild the local images; --test-tools: also the test tools
set -euo pipefail

HACK_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname -- "$HACK_DIR")
ENV_FILE="$HACK_DIR/.host.env"

REGISTRY_IMAGE=localhost/mirror-registry/distribution:2.8
# The engine's default image name; tagging our build with it lets the default
# spec run without network access.
REGISTRY_DEFAULT_IMAGE=docker.io/library/registry:2
TEST_IMAGE=localhost/mirror-registry/testimage:latest
# The quay engine's images for tests: Redis from Debian's package (tagged with
# its upstream version), a pause image from catatonit, and a stand-in for
# Quay (hack/quay-standin). None is tagged with Red Hat's names.
REDIS_REPO=localhost/mirror-registry/redis
PAUSE_IMAGE=localhost/mirror-registry/pause:latest
QUAY_STANDIN_IMAGE=localhost/mirror-registry/quay-standin:latest
# Red Hat's Redis and Quay images run as this user, group 0.
CONTAINER_UID=1001
# Marks images built here, so an image of the same name from elsewhere is
# never retagged over.
IMAGE_LABEL=io.mirror-registry.built-by
IMAGE_LABEL_VALUE=hack/setup-host.sh

# podman gives root containers nofile and nproc limits of 1048576 unless told
# otherwise.
PODMAN_DEFAULT_RLIMIT=1048576
WANT_NOFILE=20000
WANT_NPROC=4096

CONTAINERS_CONF=/etc/containers/containers.conf
CONTAINERS_DROPIN=/etc/containers/containers.conf.d/50-mirror-registry.conf
CONF_MARKER="# Written by mirror-registry hack/setup-host.sh."

# redis-tools holds the Redis binaries (redis-server runs as redis-check-rdb
# under another name) without the host service of the redis-server package.
PACKAGES=(podman runc skopeo docker-registry redis-tools busybox-static
    catatonit uidmap slirp4netns fuse-overlayfs
    dbus-daemon dbus-bin dbus-user-session systemd curl)
SYSTEMD_BIN=/lib/systemd/systemd
LOCK_FILE=/run/lock/mirror-registry-setup-host.lock
BASE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The venv of the tests' Python tools (--test-tools), and what goes in it;
# tests look for it here (MIRROR_REGISTRY_TEST_TOOLS names another).
TEST_TOOLS_VENV=/opt/mirror-registry-test-tools
TEST_TOOLS_REQUIREMENTS=$HACK_DIR/test-tools.txt

REBUILD=0
TEST_TOOLS=0
CONF_CHANGED=0
SCOPE=
PODMAN_SOCKET=
TMP_PATHS=()

changed() { printf 'changed: %s\n' "$*"; }
in_place() { printf 'in place: %s\n' "$*"; }
note() { printf '    - %s\n' "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    if ((${#TMP_PATHS[@]} > 0)); then
        rm -rf -- "${TMP_PATHS[@]}"
    fi
}
trap cleanup EXIT

new_tmp_dir() {
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/mirror-registry-hack.XXXXXX")
    TMP_PATHS+=("$dir")
    printf '%s' "$dir"
}

# Replace PATH with CONTENT (plus a final newline) and MODE only when either
# differs. Returns 1 when the file was already so.
write_if_changed() {
    local path=$1 mode=$2 content=$3 tmp
    mkdir -p -- "$(dirname -- "$path")"
    tmp=$(mktemp "$path.XXXXXX")
    printf '%s\n' "$content" >"$tmp"
    if [[ -f $path ]] && cmp -s -- "$tmp" "$path" &&
        [[ "$(stat -c %a -- "$path")" == "${mode#0}" ]]; then
        rm -f -- "$tmp"
        return 1
    fi
    chmod "$mode" -- "$tmp"
    mv -f -- "$tmp" "$path"
}

# Wait up to $1 seconds for the command that follows to succeed.
wait_for() {
    local seconds=$1 i
    shift
    for ((i = 0; i < seconds * 2; i++)); do
        if "$@"; then
            return 0
        fi
        sleep 0.5
    done
    "$@"
}

# --- packages ---------------------------------------------------------------

package_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]
}

step_packages() {
    local missing=() p log policy=/usr/sbin/policy-rc.d added_policy=0 rc=0
    for p in "${PACKAGES[@]}"; do
        package_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        in_place "packages installed: ${PACKAGES[*]}"
        return
    fi
    # docker-registry is wanted for its binary only: keep its packaged service
    # from starting (and taking port 5000) during the install.
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        added_policy=1
    fi
    log=$(new_tmp_dir)/apt.log
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    } >"$log" 2>&1 || rc=$?
    if ((added_policy)); then
        rm -f -- "$policy"
    fi
    if ((rc != 0)); then
        tail -n 30 -- "$log" >&2
        die "apt-get install ${missing[*]} failed (exit $rc)"
    fi
    changed "installed packages: ${missing[*]}"
}

# --- containers.conf --------------------------------------------------------

# True when cgroup v1 controllers sit at /sys/fs/cgroup and cgroup2 only at
# /sys/fs/cgroup/unified: crun refuses that layout ("cgroups in hybrid mode
# not supported"), runc handles it.
cgroups_hybrid() {
    [[ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null || true)" != cgroup2fs ]] &&
        [[ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null || true)" == cgroup2fs ]]
}

# Prints the hard limit for ulimit flag $1 (-n or -u) and succeeds when it is
# below podman's default and cannot be raised (no CAP_SYS_RESOURCE, or above
# fs.nr_open): containers then fail with "setrlimit ...: Operation not
# permitted".
rlimit_too_low() {
    local flag=$1 hard
    hard=$(ulimit -H "$flag")
    [[ $hard != unlimited ]] || return 1
    ((hard < PODMAN_DEFAULT_RLIMIT)) || return 1
    if (ulimit -H "$flag" "$PODMAN_DEFAULT_RLIMIT") 2>/dev/null; then
        return 1
    fi
    printf '%s' "$hard"
}

min() { if (($1 < $2)); then printf '%s' "$1"; else printf '%s' "$2"; fi; }

# Prints the value of KEY in [SECTION] of a TOML file, multi-line arrays
# joined, whitespace removed. Enough for containers.conf's simple keys.
toml_value() {
    local file=$1 section=$2 key=$3
    awk -v sec="$section" -v key="$key" '
        function strip(s) { sub(/#.*/, "", s); return s }
        inarr { val = val strip($0); if (strip($0) ~ /\]/) inarr = 0; next }
        /^[[:space:]]*\[/ { s = strip($0); gsub(/[][[:space:]]/, "", s); cur = s; next }
        cur == sec && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" {
            v = strip($0); sub(/^[^=]*=/, "", v); val = v
            if (v ~ /^[[:space:]]*\[/ && v !~ /\]/) inarr = 1
        }
        END { print val }' "$file" | tr -d '[:space:]'
}

step_containers_conf() {
    local reasons=() ulimits=() hard nofile nproc content target entry ok
    local want_runtime=0 body=""

    if cgroups_hybrid; then
        want_runtime=1
        reasons+=("cgroups are hybrid (cgroup2 only at /sys/fs/cgroup/unified), which crun rejects: runtime = \"runc\"")
    fi
    if hard=$(rlimit_too_low -n); then
        nofile=$(min "$WANT_NOFILE" "$hard")
        ulimits+=("nofile=$nofile:$nofile")
        reasons+=("hard RLIMIT_NOFILE is $hard, below podman's default $PODMAN_DEFAULT_RLIMIT, and cannot be raised: nofile=$nofile:$nofile")
    fi
    if hard=$(rlimit_too_low -u); then
        nproc=$(min "$WANT_NPROC" "$hard")
        ulimits+=("nproc=$nproc:$nproc")
        reasons+=("hard RLIMIT_NPROC is $hard, below podman's default $PODMAN_DEFAULT_RLIMIT, and cannot be raised: nproc=$nproc:$nproc")
    fi

    if ((${#reasons[@]} == 0)); then
        local removed=()
        if [[ -f $CONTAINERS_CONF ]] && [[ "$(head -n 1 -- "$CONTAINERS_CONF")" == "$CONF_MARKER" ]]; then
            rm -f -- "$CONTAINERS_CONF"
            removed+=("$CONTAINERS_CONF")
        fi
        if [[ -f $CONTAINERS_DROPIN ]]; then
            rm -f -- "$CONTAINERS_DROPIN"
            removed+=("$CONTAINERS_DROPIN")
        fi
        if ((${#removed[@]} > 0)); then
            CONF_CHANGED=1
            changed "removed ${removed[*]}: this host no longer needs overrides"
        else
            in_place "containers.conf: this host needs no overrides (crun works with its cgroups; podman's rlimits fit)"
        fi
        return
    fi

    # An admin's own containers.conf is never rewritten: it is either good
    # already, or a drop-in (read after it) adds what is missing.
    if [[ -f $CONTAINERS_CONF ]] && [[ "$(head -n 1 -- "$CONTAINERS_CONF")" != "$CONF_MARKER" ]]; then
        ok=1
        if ((want_runtime)) && [[ "$(toml_value "$CONTAINERS_CONF" engine runtime)" != '"runc"' ]]; then
            ok=0
        fi
        for entry in "${ulimits[@]}"; do
            [[ "$(toml_value "$CONTAINERS_CONF" containers default_ulimits)" == *"\"$entry\""* ]] || ok=0
        done
        if ((ok)); then
            in_place "$CONTAINERS_CONF (not ours) already has what this host needs:"
            for entry in "${reasons[@]}"; do note "$entry"; done
            return
        fi
        target=$CONTAINERS_DROPIN
    else
        target=$CONTAINERS_CONF
    fi

    content="$CONF_MARKER
# It rewrites this file on every run; delete this header to keep your edits.
# Why this host needs it:"
    for entry in "${reasons[@]}"; do
        content+=$'\n'"#   - $entry"
    done
    if ((${#ulimits[@]} > 0)); then
        body+=$'\n[containers]\ndefault_ulimits = ['
        for entry in "${ulimits[@]}"; do
            body+=$'\n'"  \"$entry\","
        done
        body+=$'\n]\n'
    fi
    if ((want_runtime)); then
        body+=$'\n[engine]\nruntime = "runc"\n'
    fi
    content+="${body%$'\n'}"

    if write_if_changed "$target" 0644 "$content"; then
        CONF_CHANGED=1
        changed "wrote $target because:"
    else
        in_place "$target has the overrides this host needs:"
    fi
    for entry in "${reasons[@]}"; do note "$entry"; done
}

# --- podman API socket under systemd ----------------------------------------

podman_ping() {
    [[ "$(curl -sS --max-time 10 --unix-socket "$PODMAN_SOCKET" http://d/_ping 2>/dev/null || true)" == OK ]]
}

check_podman_socket() {
    if ! wait_for 20 podman_ping; then
        die "podman API at $PODMAN_SOCKET does not answer _ping"
    fi
    in_place "podman API answers _ping at $PODMAN_SOCKET"
}

# podman.service is started by its socket and reads containers.conf when it
# starts: after a change, stop it so the next request starts it afresh.
refresh_podman_service() {
    local -a ctl=("$@")
    if ((CONF_CHANGED)) && [[ "$("${ctl[@]}" is-active podman.service 2>/dev/null || true)" == active ]]; then
        "${ctl[@]}" stop podman.service
        changed "stopped podman.service so it rereads containers.conf when next activated"
    fi
}

setup_system_scope() {
    SCOPE=system
    PODMAN_SOCKET=/run/podman/podman.sock
    if [[ "$(systemctl is-enabled podman.socket 2>/dev/null || true)" == enabled ]] &&
        [[ "$(systemctl is-active podman.socket 2>/dev/null || true)" == active ]]; then
        in_place "podman.socket enabled and active (system manager)"
    else
        systemctl enable --now podman.socket
        changed "enabled and started podman.socket (system manager)"
    fi
    refresh_podman_service systemctl
    check_podman_socket
}

bus_answers() {
    timeout 5 dbus-send --session --reply-timeout=3000 --dest=org.freedesktop.DBus \
        --print-reply / org.freedesktop.DBus.ListNames >/dev/null 2>&1
}

# The manager owns org.freedesktop.systemd1 on the session bus (asked without
# triggering bus activation).
manager_on_bus() {
    timeout 5 dbus-send --session --reply-timeout=3000 --dest=org.freedesktop.DBus \
        --print-reply / org.freedesktop.DBus.NameHasOwner string:org.freedesktop.systemd1 \
        2>/dev/null | grep -q 'boolean true'
}

# Prints the user manager's state (running, degraded, ...), nothing when none
# answers. Without its private socket systemctl would fall back to the bus and
# trigger a pointless activation attempt there.
manager_state() {
    [[ -S $XDG_RUNTIME_DIR/systemd/private ]] || return 0
    timeout 10 systemctl --user show --property=SystemState --value 2>/dev/null || true
}

manager_answers() { [[ -n "$(manager_state)" ]]; }
bus_ready() { bus_answers && manager_on_bus; }

# Runs a long-lived daemon detached from this script: own session, minimal
# environment, no inherited descriptors (notably the lock), output to a log.
spawn_detached() {
    local log=$1
    shift
    env -i HOME="$HOME" USER="$(id -un)" LANG=C.UTF-8 PATH="$BASE_PATH" \
        XDG_RUNTIME_DIR="$XDG_RUNTIME_DIR" DBUS_SESSION_BUS_ADDRESS="$DBUS_SESSION_BUS_ADDRESS" \
        setsid "$@" </dev/null >>"$log" 2>&1 9>&- &
    SPAWNED_PID=$!
    disown "$SPAWNED_PID"
}

# The session bus comes from the manager's dbus.socket (dbus-user-session),
# which binds $XDG_RUNTIME_DIR/bus itself and starts dbus-daemon on demand; a
# dbus-daemon started beside it would lose that path to it. So the manager
# comes first, and the bus is checked through it.
ensure_user_manager() {
    local private=$XDG_RUNTIME_DIR/systemd/private bus=$XDG_RUNTIME_DIR/bus
    local log=$XDG_RUNTIME_DIR/systemd-user.log state what='' pid

    state=$(manager_state)
    if [[ -z $state ]]; then
        # One that is still starting gets a moment before it counts as gone.
        pid=$(pgrep -u "$(id -u)" -f "(^|/)systemd --user( |$)" | head -n 1 || true)
        if [[ -n $pid ]]; then
            wait_for 10 manager_answers || true
            state=$(manager_state)
            [[ -n $state ]] || die "systemd --user (pid $pid) runs but does not answer; stop it and run again"
        fi
    fi
    if [[ -n $state ]]; then
        in_place "systemd --user manager answers (state: $state)"
        return
    fi

    [[ -x $SYSTEMD_BIN ]] || die "$SYSTEMD_BIN not found"
    if [[ -e $private || -L $private ]]; then
        rm -f -- "$private"
        what+="removed stale $private; "
    fi
    if [[ -e $bus || -L $bus ]] && ! bus_answers; then
        rm -f -- "$bus"
        what+="removed dead socket $bus; "
    fi
    spawn_detached "$log" "$SYSTEMD_BIN" --user
    if ! wait_for 30 manager_answers; then
        die "systemd --user (pid $SPAWNED_PID) did not come up; see $log"
    fi
    changed "${what}started systemd --user (pid $SPAWNED_PID, state: $(manager_state)); log $log"
}

ensure_session_bus() {
    local bus=$XDG_RUNTIME_DIR/bus
    if bus_ready; then
        in_place "D-Bus session bus answers at $bus, the manager on it"
        return
    fi
    # A first connection starts dbus.service; give that a moment.
    if [[ -S $bus ]] && wait_for 10 bus_ready; then
        changed "D-Bus session bus: started on demand at $bus, the manager on it"
        return
    fi
    # The socket file was removed or taken over: have the manager bind it anew.
    systemctl --user restart dbus.socket
    if ! wait_for 15 bus_ready; then
        die "no working session bus with the manager on it at $bus (see systemctl --user status dbus.socket dbus.service)"
    fi
    changed "D-Bus session bus: restarted the manager's dbus.socket; it answers at $bus, the manager on it"
}

setup_user_scope() {
    local uid
    uid=$(id -u)
    SCOPE=user
    export XDG_RUNTIME_DIR=/run/user/$uid
    export DBUS_SESSION_BUS_ADDRESS=unix:path=$XDG_RUNTIME_DIR/bus
    PODMAN_SOCKET=$XDG_RUNTIME_DIR/podman/podman.sock

    if [[ -d /run/systemd/system ]]; then
        in_place "/run/systemd/system exists (PID 1 is not systemd; a systemd --user manager is used)"
    else
        mkdir -p /run/systemd/system
        changed "created /run/systemd/system: PID 1 is not systemd, and systemd --user refuses to run without it"
    fi

    if [[ -d $XDG_RUNTIME_DIR ]] && [[ "$(stat -c '%a %u' -- "$XDG_RUNTIME_DIR")" == "700 $uid" ]]; then
        in_place "XDG_RUNTIME_DIR $XDG_RUNTIME_DIR (0700)"
    else
        mkdir -p -- "$XDG_RUNTIME_DIR"
        chown "$uid" -- "$XDG_RUNTIME_DIR"
        chmod 0700 -- "$XDG_RUNTIME_DIR"
        changed "made XDG_RUNTIME_DIR $XDG_RUNTIME_DIR (0700)"
    fi

    ensure_user_manager
    ensure_session_bus

    if [[ "$(systemctl --user is-active podman.socket 2>/dev/null || true)" == active ]]; then
        in_place "podman.socket active (user manager)"
    else
        systemctl --user start podman.socket
        changed "started podman.socket (user manager)"
    fi
    refresh_podman_service systemctl --user
    check_podman_socket
}

step_systemd() {
    if [[ "$(cat /proc/1/comm 2>/dev/null || true)" == systemd ]]; then
        setup_system_scope
    else
        setup_user_scope
    fi
}

# --- local images -----------------------------------------------------------

image_id() { podman image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
short_id() { printf '%.12s' "$1"; }

# Copies the shared libraries and loader that ldd lists for BINARY into ROOT,
# at the same paths. Prints nothing for a static binary.
copy_libs() {
    local binary=$1 root=$2 line path
    while read -r line; do
        case $line in
        *'=> /'*) path=${line#*=> } ;;
        /*) path=$line ;;
        *) continue ;;
        esac
        path=${path%% (*}
        install -D -m 0755 -- "$(readlink -f -- "$path")" "$root$path"
    done < <(ldd "$binary" 2>/dev/null || true)
}

# Minimal /etc and /tmp so tools that look up users or write temp files work.
add_base_files() {
    local root=$1
    mkdir -p -- "$root/etc" "$root/tmp"
    chmod 1777 -- "$root/tmp"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}

# podman build CONTEXT TAG: reproducible timestamps, so a rebuild from the same
# inputs gives the same image id.
build_image() {
    local ctx=$1 tag=$2 log
    log=$ctx.build.log
    TMP_PATHS+=("$log")
    if ! podman build --pull=never --timestamp 0 --tag "$tag" --file "$ctx/Containerfile" "$ctx" >"$log" 2>&1; then
        cat -- "$log" >&2
        die "podman build of $tag failed"
    fi
}

build_registry_image() {
    local ctx root version old new
    old=$(image_id "$REGISTRY_IMAGE")
    if ((!REBUILD)) && [[ -n $old ]]; then
        in_place "image $REGISTRY_IMAGE ($(short_id "$old"))"
        return
    fi
    version=$(dpkg-query -W -f='${Version}' docker-registry)
    ctx=$(new_tmp_dir)
    root=$ctx/rootfs
    add_base_files "$root"
    install -D -m 0755 -- /usr/bin/docker-registry "$root/bin/registry"
    copy_libs /usr/bin/docker-registry "$root"
    if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
        install -D -m 0644 -- /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    fi
    mkdir -p -- "$root/var/lib/registry"
    # The upstream image's default configuration: plain HTTP on :5000.
    install -D -m 0644 /dev/stdin "$root/etc/docker/registry/config.yml" <<'EOF'
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
EOF
    cat >"$ctx/Containerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
LABEL $IMAGE_LABEL="$IMAGE_LABEL_VALUE" io.mirror-registry.source="Debian docker-registry $version"
EXPOSE 5000
VOLUME /var/lib/registry
CMD ["registry", "serve", "/etc/docker/registry/config.yml"]
EOF
    build_image "$ctx" "$REGISTRY_IMAGE"
    rm -rf -- "$ctx"
    new=$(image_id "$REGISTRY_IMAGE")
    if [[ $new == "$old" ]]; then
        in_place "rebuilt $REGISTRY_IMAGE: identical image ($(short_id "$new"))"
    else
        changed "built $REGISTRY_IMAGE ($(short_id "$new")) from /usr/bin/docker-registry (Debian $version)"
    fi
}

tag_default_registry_image() {
    local ours theirs label
    ours=$(image_id "$REGISTRY_IMAGE")
    theirs=$(image_id "$REGISTRY_DEFAULT_IMAGE")
    if [[ $theirs == "$ours" ]]; then
        in_place "$REGISTRY_DEFAULT_IMAGE is $REGISTRY_IMAGE ($(short_id "$ours"))"
        return
    fi
    if [[ -n $theirs ]]; then
        label=$(podman image inspect --format "{{index .Labels \"$IMAGE_LABEL\"}}" "$REGISTRY_DEFAULT_IMAGE" 2>/dev/null || true)
        if [[ $label != "$IMAGE_LABEL_VALUE" ]]; then
            in_place "$REGISTRY_DEFAULT_IMAGE exists ($(short_id "$theirs")) and was not built here; left as it is"
            return
        fi
    fi
    podman tag "$REGISTRY_IMAGE" "$REGISTRY_DEFAULT_IMAGE"
    changed "tagged $REGISTRY_IMAGE as $REGISTRY_DEFAULT_IMAGE (the engine's default image), so the default spec runs offline"
}

build_test_image() {
    local ctx root busybox old new applet sleep_arg=infinity rc=0
    old=$(image_id "$TEST_IMAGE")
    if ((!REBUILD)) && [[ -n $old ]]; then
        in_place "image $TEST_IMAGE ($(short_id "$old"))"
        return
    fi
    busybox=$(dpkg-query -L busybox-static | grep -m 1 '/bin/busybox$') ||
        die "busybox-static ships no /bin/busybox"
    # Older busybox builds reject "infinity"; a long sleep does the same job.
    timeout 1 "$busybox" sleep infinity >/dev/null 2>&1 || rc=$?
    if ((rc != 124)); then
        sleep_arg=2147483647
    fi
    ctx=$(new_tmp_dir)
    root=$ctx/rootfs
    add_base_files "$root"
    install -D -m 0755 -- "$busybox" "$root/bin/busybox"
    copy_libs "$busybox" "$root"
    for applet in $("$busybox" --list); do
        [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
    done
    cat >"$ctx/Containerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
LABEL $IMAGE_LABEL="$IMAGE_LABEL_VALUE"
CMD ["sleep", "$sleep_arg"]
EOF
    build_image "$ctx" "$TEST_IMAGE"
    rm -rf -- "$ctx"
    new=$(image_id "$TEST_IMAGE")
    if [[ $new == "$old" ]]; then
        in_place "rebuilt $TEST_IMAGE: identical image ($(short_id "$new"))"
    else
        changed "built $TEST_IMAGE ($(short_id "$new")) from $busybox (CMD sleep $sleep_arg)"
    fi
}

# Redis from Debian's redis-tools: /usr/bin/redis-check-rdb is the server
# binary, which acts as the server when called redis-server. Runs as
# $CONTAINER_UID like Red Hat's image; the quay engine passes its own config
# file (redis-server /etc/mirror-registry/redis.conf).
build_redis_image() {
    local ctx root version upstream image old new binary=/usr/bin/redis-check-rdb
    version=$(dpkg-query -W -f='${Version}' redis-tools)
    upstream=${version#*:}
    upstream=${upstream%%-*}
    image=$REDIS_REPO:$upstream
    old=$(image_id "$image")
    if ((!REBUILD)) && [[ -n $old ]]; then
        in_place "image $image ($(short_id "$old"))"
        return
    fi
    [[ -x $binary ]] || die "$binary not found (package redis-tools)"
    ctx=$(new_tmp_dir)
    root=$ctx/rootfs
    add_base_files "$root"
    install -D -m 0755 -- "$binary" "$root/usr/bin/redis-server"
    copy_libs "$binary" "$root"
    cat >"$ctx/Containerfile" <<CONTAINERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/bin
LABEL $IMAGE_LABEL="$IMAGE_LABEL_VALUE" io.mirror-registry.source="Debian redis-tools $version"
USER $CONTAINER_UID
WORKDIR /tmp
EXPOSE 6379
CMD ["redis-server"]
CONTAINERFILE
    build_image "$ctx" "$image"
    rm -rf -- "$ctx"
    new=$(image_id "$image")
    if [[ $new == "$old" ]]; then
        in_place "rebuilt $image: identical image ($(short_id "$new"))"
    else
        changed "built $image ($(short_id "$new")) from $binary (Debian redis-tools $version)"
    fi
}

# A pod infra image from Debian's catatonit, as podman builds its own.
build_pause_image() {
    local ctx root version old new binary=/usr/bin/catatonit
    old=$(image_id "$PAUSE_IMAGE")
    if ((!REBUILD)) && [[ -n $old ]]; then
        in_place "image $PAUSE_IMAGE ($(short_id "$old"))"
        return
    fi
    [[ -x $binary ]] || die "$binary not found (package catatonit)"
    version=$(dpkg-query -W -f='${Version}' catatonit)
    ctx=$(new_tmp_dir)
    root=$ctx/rootfs
    add_base_files "$root"
    install -D -m 0755 -- "$binary" "$root/catatonit"
    copy_libs "$binary" "$root"
    cat >"$ctx/Containerfile" <<CONTAINERFILE
FROM scratch
COPY rootfs/ /
LABEL $IMAGE_LABEL="$IMAGE_LABEL_VALUE" io.mirror-registry.source="Debian catatonit $version"
ENTRYPOINT ["/catatonit", "-P"]
CONTAINERFILE
    build_image "$ctx" "$PAUSE_IMAGE"
    rm -rf -- "$ctx"
    new=$(image_id "$PAUSE_IMAGE")
    if [[ $new == "$old" ]]; then
        in_place "rebuilt $PAUSE_IMAGE: identical image ($(short_id "$new"))"
    else
        changed "built $PAUSE_IMAGE ($(short_id "$new")) from $binary (Debian catatonit $version)"
    fi
}

# Hash of what the stand-in image is made from: its crate, the workspace's
# manifest and lock file, and this script (its recipe).
standin_source_hash() {
    (
        cd -- "$REPO_DIR"
        find hack/quay-standin -type f ! -path '*/target/*' -print0 | sort -z | xargs -0 sha256sum
        sha256sum Cargo.toml Cargo.lock hack/setup-host.sh
    ) | sha256sum | cut -c 1-16
}

# The stand-in for Quay (hack/quay-standin), laid out like Quay's image:
# /quay-registry/conf/stack, /sqlite, /datastorage; user $CONTAINER_UID;
# port 8443; mode argument "registry"; an init in front of it (Quay's image
# has dumb-init) so it stops on SIGTERM. Rebuilt when its sources change.
build_quay_standin_image() {
    local ctx root hash have old new binary
    hash=$(standin_source_hash)
    old=$(image_id "$QUAY_STANDIN_IMAGE")
    have=$(podman image inspect --format '{{index .Labels "io.mirror-registry.source-hash"}}' "$QUAY_STANDIN_IMAGE" 2>/dev/null || true)
    if ((!REBUILD)) && [[ -n $old && $have == "$hash" ]]; then
        in_place "image $QUAY_STANDIN_IMAGE ($(short_id "$old"), sources $hash)"
        return
    fi
    command -v cargo >/dev/null || die "cargo not found: it builds the Quay stand-in (hack/quay-standin) that tests run"
    ctx=$(new_tmp_dir)
    if ! (cd -- "$REPO_DIR" && cargo build --release --locked -p quay-standin) >"$ctx/cargo.log" 2>&1; then
        tail -n 30 -- "$ctx/cargo.log" >&2
        die "cargo build --release -p quay-standin failed"
    fi
    binary=$REPO_DIR/target/release/quay-standin
    root=$ctx/rootfs
    add_base_files "$root"
    install -D -m 0755 -- "$binary" "$root/usr/local/bin/quay-standin"
    copy_libs "$binary" "$root"
    install -D -m 0755 -- /usr/bin/catatonit "$root/usr/bin/catatonit"
    copy_libs /usr/bin/catatonit "$root"
    mkdir -p -- "$ctx/data/quay-registry/conf/stack" "$ctx/data/sqlite" "$ctx/data/datastorage"
    chmod -R 0775 -- "$ctx/data"
    cat >"$ctx/Containerfile" <<CONTAINERFILE
FROM scratch
COPY rootfs/ /
COPY --chown=$CONTAINER_UID:0 data/ /
LABEL $IMAGE_LABEL="$IMAGE_LABEL_VALUE" io.mirror-registry.source="hack/quay-standin, a stand-in for Quay for tests" io.mirror-registry.source-hash="$hash"
USER $CONTAINER_UID
EXPOSE 8443
ENTRYPOINT ["/usr/bin/catatonit", "--", "/usr/local/bin/quay-standin"]
CMD ["registry"]
CONTAINERFILE
    build_image "$ctx" "$QUAY_STANDIN_IMAGE"
    rm -rf -- "$ctx"
    new=$(image_id "$QUAY_STANDIN_IMAGE")
    if [[ $new == "$old" ]]; then
        in_place "rebuilt $QUAY_STANDIN_IMAGE: identical image ($(short_id "$new"))"
    else
        changed "built $QUAY_STANDIN_IMAGE ($(short_id "$new")) from hack/quay-standin (sources $hash)"
        # The previous build, now untagged; kept while a container uses it.
        if [[ -n $old ]] && podman image rm "$old" >/dev/null 2>&1; then
            changed "removed the previous build $(short_id "$old")"
        fi
    fi
}

step_images() {
    build_registry_image
    tag_default_registry_image
    build_test_image
    build_redis_image
    build_pause_image
    build_quay_standin_image
}

# --- test tools -------------------------------------------------------------

# A venv of Debian's python3 holding hack/test-tools.txt's pins; rebuilt
# (venv --clear) when that file changed since it was made.
step_test_tools() {
    local want have log venv_python=/usr/bin/python3
    want=$(sha256sum <"$TEST_TOOLS_REQUIREMENTS" | cut -d' ' -f1)
    have=$(cat -- "$TEST_TOOLS_VENV/.requirements.sha256" 2>/dev/null || true)
    if [[ $want == "$have" ]] && "$TEST_TOOLS_VENV/bin/python" -c \
        'import kubernetes_validate, celpy' 2>/dev/null; then
        in_place "test tools in $TEST_TOOLS_VENV ($(grep -v '^#' "$TEST_TOOLS_REQUIREMENTS" | paste -sd ' ' -))"
        return
    fi
    if ! package_installed python3-venv; then
        log=$(new_tmp_dir)/apt.log
        {
            DEBIAN_FRONTEND=noninteractive apt-get update -q &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
        } >"$log" 2>&1 || {
            tail -n 30 -- "$log" >&2
            die "apt-get install python3-venv failed"
        }
        changed "installed packages: python3-venv"
    fi
    log=$(new_tmp_dir)/pip.log
    {
        "$venv_python" -m venv --clear "$TEST_TOOLS_VENV" &&
            "$TEST_TOOLS_VENV/bin/pip" install -q --disable-pip-version-check \
                -r "$TEST_TOOLS_REQUIREMENTS"
    } >"$log" 2>&1 || {
        tail -n 30 -- "$log" >&2
        die "pip install -r $TEST_TOOLS_REQUIREMENTS into $TEST_TOOLS_VENV failed"
    }
    printf '%s\n' "$want" >"$TEST_TOOLS_VENV/.requirements.sha256"
    changed "test tools in $TEST_TOOLS_VENV: $(grep -v '^#' "$TEST_TOOLS_REQUIREMENTS" | paste -sd ' ' -)"
}

# --- observability test tools ----------------------------------------------

# tests/observability.rs scrapes the controller with a real Prometheus and
# reads its status page in a real browser: Debian's prometheus and chromium,
# without recommends (no node exporter, no desktop extras), their packaged
# services never started; and playwright-core from npm, pinned by
# hack/browser/package-lock.json, which drives /usr/bin/chromium (it downloads
# no browser of its own).
OBS_PACKAGES=(prometheus chromium)
BROWSER_DIR=$HACK_DIR/browser
NODE_MIN_MAJOR=20

step_observability_packages() {
    local missing=() p log policy=/usr/sbin/policy-rc.d added_policy=0 rc=0
    for p in "${OBS_PACKAGES[@]}"; do
        package_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        in_place "packages installed: ${OBS_PACKAGES[*]}"
        return
    fi
    # Tests run their own Prometheus on a free loopback port: keep the
    # packaged one (all interfaces, :9090) from starting now or at boot.
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        added_policy=1
    fi
    log=$(new_tmp_dir)/apt.log
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    } >"$log" 2>&1 || rc=$?
    if ((added_policy)); then
        rm -f -- "$policy"
    fi
    if ((rc != 0)); then
        tail -n 30 -- "$log" >&2
        die "apt-get install ${missing[*]} failed (exit $rc)"
    fi
    changed "installed packages: ${missing[*]}"
    # --root=/ works on the unit files whether or not a system manager runs.
    if [[ " ${missing[*]} " == *" prometheus "* ]] &&
        systemctl --root=/ disable prometheus.service >/dev/null 2>&1; then
        changed "disabled the packaged prometheus.service (tests start their own)"
    fi
}

step_browser_driver() {
    local node_major want have log
    command -v node >/dev/null && command -v npm >/dev/null ||
        die "node and npm not found: the browser test drives chromium with playwright-core (Node.js >= $NODE_MIN_MAJOR)"
    node_major=$(node -p 'process.versions.node.split(".")[0]')
    ((node_major >= NODE_MIN_MAJOR)) ||
        die "Node.js $(node --version) is too old for playwright-core (needs >= $NODE_MIN_MAJOR)"
    want=$(node -p "require('$BROWSER_DIR/package-lock.json').packages['node_modules/playwright-core'].version")
    have=$(node -p "require('$BROWSER_DIR/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
    if [[ $have == "$want" ]]; then
        in_place "playwright-core $have in $BROWSER_DIR/node_modules"
        return
    fi
    log=$(new_tmp_dir)/npm.log
    # No install scripts: playwright-core has none, and no browser download.
    if ! (cd -- "$BROWSER_DIR" && npm ci --no-audit --no-fund --ignore-scripts) >"$log" 2>&1; then
        tail -n 30 -- "$log" >&2
        die "npm ci in $BROWSER_DIR failed"
    fi
    changed "installed playwright-core $want into $BROWSER_DIR/node_modules (npm ci)"
}

# --- env file ---------------------------------------------------------------

step_env_file() {
    local content
    content="# Written by hack/setup-host.sh for this host; source hack/env.sh to use it."
    if [[ $SCOPE == user ]]; then
        content+=$'\n'"$(printf 'export XDG_RUNTIME_DIR=%q' "$XDG_RUNTIME_DIR")"
        content+=$'\n'"$(printf 'export DBUS_SESSION_BUS_ADDRESS=%q' "$DBUS_SESSION_BUS_ADDRESS")"
    fi
    content+=$'\n'"$(printf 'export MIRROR_REGISTRY_SCOPE=%q' "$SCOPE")"
    content+=$'\n'"$(printf 'export MIRROR_REGISTRY_PODMAN_SOCKET=%q' "$PODMAN_SOCKET")"
    if write_if_changed "$ENV_FILE" 0644 "$content"; then
        changed "wrote $ENV_FILE (scope $SCOPE)"
    else
        in_place "$ENV_FILE (scope $SCOPE)"
    fi
}

# --- main -------------------------------------------------------------------

main() {
    local arg
    for arg in "$@"; do
        case $arg in
        --rebuild) REBUILD=1 ;;
        --test-tools) TEST_TOOLS=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
            return 0
            ;;
        *) die "unknown argument: $arg (see --help)" ;;
        esac
    done
    [[ $(id -u) -eq 0 ]] || die "run as root: it installs packages and writes /etc/containers"

    # Concurrent runs would race to start the bus and the manager.
    mkdir -p -- "$(dirname -- "$LOCK_FILE")"
    exec 9>"$LOCK_FILE"
    flock 9

    step_packages
    step_containers_conf
    step_systemd
    step_images
    if ((TEST_TOOLS)); then
        step_test_tools
        step_observability_packages
        step_browser_driver
    fi
    step_env_file
}

main "$@"
