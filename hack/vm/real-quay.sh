# shellcheck shell=bash
# Q1: the quay engine against a real Quay image in system scope, sourced by
# hack/test-vm.sh after hack/vm/lib.sh. By hand only: no Quay image can be
# pulled on a test host, so CI checks the engine against
# hack/quay-standin/. Give it an image in this host's podman storage (Red
# Hat's, or one built from Quay's source: docs/quay.md):
#
#   MIRROR_REGISTRY_VM_QUAY_IMAGE=NAME [MIRROR_REGISTRY_VM_QUAY_UPGRADE_IMAGE=NAME2] \
#   MIRROR_REGISTRY_VM_MEMORY=7168 hack/test-vm.sh --debian 12 --tests T1,Q1
#
# Quay with one worker each holds about 4 GiB, and under TCG its first start
# (the database migration, some forty processes) takes over ten minutes
# (762 s, Debian 12 on a 2-core host), each restart about eight.
#
#   rq_payload DIR   host: one archive of the image(s), Redis and pause, as
#                    `podman save` writes it, for spec.images.archive
#   rq_real_quay     with the controller installed (T1): a spec dropped,
#                    Ready by /health/instance; the initial user created
#                    once; login, push, pull by digest with the CA the
#                    controller trusted; start-up log; the units restarted
#                    and (with an upgrade image) the image upgraded, data
#                    and credentials kept; the web UI screenshot from this
#                    host; delete

RQ_IMAGE=${MIRROR_REGISTRY_VM_QUAY_IMAGE:-}
RQ_UPGRADE=${MIRROR_REGISTRY_VM_QUAY_UPGRADE_IMAGE:-}
RQ_TIMEOUT=5400
RQ_HOST=quay.guest.test

rq_payload() {
    local images=("$RQ_IMAGE")
    [[ -n $RQ_IMAGE ]] || return 0
    [[ -z $RQ_UPGRADE ]] || images+=("$RQ_UPGRADE")
    step "host: the Quay image archive (${images[*]}, $REDIS, $PAUSE)"
    podman save -q -m --format docker-archive -o "$1/images/quay-real.tar" "${images[@]}" "$REDIS" "$PAUSE" ||
        vm_die "podman save of ${images[*]} failed (MIRROR_REGISTRY_VM_QUAY_IMAGE names an image in this host's storage)"
}

rq_real_quay() {
    local port=$1 png
    if [[ -z $RQ_IMAGE ]]; then
        not_ok "Q1 needs MIRROR_REGISTRY_VM_QUAY_IMAGE (an image in this host's podman storage)"
        return 1
    fi
    g PORT="$port" QUAY="$RQ_IMAGE" NEXT="$RQ_UPGRADE" REDIS="$REDIS" PAUSE="$PAUSE" TIMEOUT="$RQ_TIMEOUT" \
        HOST="$RQ_HOST" <<'EOF' || return 1
R=/var/lib/mirror-registry/rq
CA=$R/tls/ca.crt
grep -q " $HOST\$" /etc/hosts || echo "127.0.0.1 $HOST" >>/etc/hosts
healthy() { [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 --cacert "$CA" "https://$HOST:$PORT/health/instance" || true)" == 200 ]]; }
ready() { is_phase rq Ready && healthy; }
app_id() { container_id rq-app; }
# What the controller logged of the initial user: each POST to Quay's
# initialize ends in one of these lines (created, already had users, or not
# created).
inits() {
    journalctl -u mirror-registry-controller --no-pager -o cat | grep -E 'registry="?rq"?( |$)' |
        grep -cE "initial user created|already has users|initial user not created" || true
}
secrets() { (cd "$R/secrets" && sha256sum -- * | sha256sum | cut -c1-16); }
# Login with the generated credentials on stdin, then pull DIGEST into a
# scratch storage (blobs verified): what a client on another host does.
# (An authfile podman has not written yet must not exist: it reads an empty
# one as broken JSON.)
login_pull() { # WHEN DIGEST
    local store
    store=$(mktemp -d)
    check "$1: podman login $HOST:$PORT as $USER_ (CA from /etc/containers/certs.d)" \
        login "$store/auth.json"
    check "$1: pull $HOST:$PORT/$USER_/testimage@$2 into a fresh storage" \
        quiet podman --root "$store/root" --runroot "$store/run" --storage-driver vfs pull \
        --authfile "$store/auth.json" "$HOST:$PORT/$USER_/testimage@$2"
    rm -rf -- "$store"
}
login() { podman login --authfile "$1" -u "$USER_" --password-stdin "$HOST:$PORT" </root/rq.pw >/dev/null; }

cat >/root/rq.yaml <<SPEC
apiVersion: mirrorregistry.io/v1alpha1
kind: MirrorRegistry
metadata:
  name: rq
spec:
  engine: quay
  hostname: $HOST
  port: $PORT
  images:
    archive: /mnt/payload/images/quay-real.tar
    quay: $QUAY
    redis: $REDIS
    pause: $PAUSE
SPEC
t0=$(now)
mv /root/rq.yaml /etc/mirror-registry/rq.yaml
if wait_for "$TIMEOUT" ready; then
    secs=$(since "$t0")
    ok "rq: Ready and /health/instance 200 after ${secs}s"
    measure "quay engine (real Quay $QUAY): spec dropped to Ready with its initial user (image archive loaded)" "$secs"
else
    not_ok "rq: not Ready within ${TIMEOUT}s: $(condition rq Ready)"
    podman logs --tail 40 rq-app 2>&1 | show
    exit 1
fi
check_has "Healthy" "$(condition rq Healthy)" "True "
curl -s --cacert "$CA" "https://$HOST:$PORT/health/instance" | jq -c '.data.services' | show
for u in rq-pod rq-redis rq-app; do
    check_eq "$u.service" "$(unit_prop $u FragmentPath) $(unit_prop $u ActiveState)/$(unit_prop $u UnitFileState)" \
        "/etc/systemd/system/$u.service active/enabled"
done
check_eq "the app runs $QUAY" "$(podman inspect --format '{{.ImageName}}' rq-app)" "$QUAY"
USER_=$(mrctl credentials rq -o json | jq -r .username)
check_eq "the initial user (mrctl credentials)" "$USER_" init
# The password, for podman's stdin only, never a command line.
(umask 077 && sed -n 's/^password: *//p' "$R/secrets/init-credentials" | tr -d "'\"" >/root/rq.pw)
check "the controller recorded the initial user as created" test -f "$R/secrets/quay-init-user"
check_eq "initialize requests sent by the controller" "$(inits)" 1
body=$(curl -s --cacert "$CA" -H 'Content-Type: application/json' -d '{"username":"second","password":"password123"}' \
    "https://$HOST:$PORT/api/v1/user/initialize")
check_has "a second initialize is refused by Quay" "$body" "non-empty database"
check "Quay's SQLite database in the sqlite volume" \
    test -s "$(podman volume inspect --format '{{.Mountpoint}}' rq-sqlite-storage)/quay_sqlite.db"
check "the CA trusted for podman" test -s "/etc/containers/certs.d/$HOST:$PORT/ca.crt"

podman load -q -i /mnt/payload/images/extra.tar >/dev/null
auth=$(mktemp -d)
t0=$(now)
check "podman login $HOST:$PORT with the generated credentials" login "$auth/auth.json"
check "podman push of the test image to $HOST:$PORT/$USER_/testimage:v1" \
    quiet podman push --authfile "$auth/auth.json" --digestfile /root/rq.digest \
    localhost/mirror-registry/testimage:latest "$HOST:$PORT/$USER_/testimage:v1"
measure "real Quay in the guest: podman login + push of one image (2 MiB)" "$(since "$t0")"
rm -rf -- "$auth"
DIGEST=$(cat /root/rq.digest 2>/dev/null || true)
printf '      pushed %s\n' "$DIGEST"
login_pull "after install" "$DIGEST"

printf '      start-up log, lines naming an error (read them):\n'
podman logs rq-app 2>&1 | grep -iE 'error|traceback|fatal|denied' | sort | uniq -c | sort -rn | head -n 20 | show
# Ours are the mounts: config and certificate, database, storage. (Before
# its gunicorn workers are up, nginx logs "no such file" for their sockets:
# not ours.)
check_eq "start-up log lines naming permission, read-only or missing files under our mounts" \
    "$(podman logs rq-app 2>&1 | grep -iE 'permission denied|read-only file system|no such file or directory' |
        grep -cE '/conf/stack|/sqlite|/datastorage|ssl\.(cert|key)|config\.yaml' || true)" 0
SECRETS=$(secrets)

# Restart: what a reboot or an operator does to the units.
id=$(app_id)
t0=$(now)
systemctl restart rq-redis.service rq-app.service
back() { [[ "$(app_id)" != "$id" && -n "$(app_id)" ]] && ready; }
if wait_for "$TIMEOUT" back; then
    ok "after systemctl restart of rq-redis and rq-app: Ready again in $(since "$t0")s"
    measure "real Quay in the guest: units restarted to healthy" "$(since "$t0")"
else
    not_ok "not Ready within ${TIMEOUT}s of the restart: $(condition rq Ready)"
fi
login_pull "after restart" "$DIGEST"
check_eq "after restart: secrets unchanged" "$(secrets)" "$SECRETS"
check_eq "after restart: initialize requests sent, in all" "$(inits)" 1

if [[ -n $NEXT ]]; then
    redis_id=$(container_id rq-redis) id=$(app_id)
    t0=$(now)
    sed -i "s|quay: $QUAY|quay: $NEXT|" /etc/mirror-registry/rq.yaml
    on_next() { [[ "$(podman inspect --format '{{.ImageName}}' rq-app 2>/dev/null)" == "$NEXT" ]] && ready; }
    if wait_for "$TIMEOUT" on_next; then
        ok "image upgrade to $NEXT: Ready again in $(since "$t0")s"
        measure "real Quay in the guest: image upgraded to healthy" "$(since "$t0")"
    else
        not_ok "not Ready on $NEXT within ${TIMEOUT}s: $(condition rq Ready)"
    fi
    check_eq "upgrade: Redis kept running (same container)" "$(container_id rq-redis)" "$redis_id"
    login_pull "after upgrade" "$DIGEST"
    check_eq "after upgrade: secrets unchanged" "$(secrets)" "$SECRETS"
    check_eq "after upgrade: initialize requests sent, in all" "$(inits)" 1
fi
rm -f -- /root/rq.pw
EOF
    # The web UI from this host through the forward (Chromium does not
    # know the generated CA: certificate errors ignored for the picture).
    png=$VM_RUN/quay-ui.png
    if command -v chromium >/dev/null &&
        timeout 300 chromium --headless --no-sandbox --disable-gpu --ignore-certificate-errors \
            --host-resolver-rules="MAP $RQ_HOST 127.0.0.1" --window-size=1280,900 --virtual-time-budget=20000 \
            --screenshot="$png" "https://$RQ_HOST:$port/signin" >/dev/null 2>&1 && [[ -s $png ]]; then
        ok "the web UI's sign-in page, screenshot: $png (look at it)"
    else
        not_ok "no screenshot of https://$RQ_HOST:$port/signin"
    fi
    g <<'EOF'
mrctl delete rq --wait --timeout 30m 2>&1 | show
check "mrctl delete rq --wait" test "${PIPESTATUS[0]}" = 0
check "rq's units are gone" bash -c '! ls /etc/systemd/system/rq-* 2>/dev/null'
EOF
}
