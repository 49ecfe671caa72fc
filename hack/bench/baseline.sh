#!/usr/bin/env bash
# The convergence baseline: the steps the controller takes for a
# distribution-engine registry, done by hand with openssl, htpasswd, podman
# and systemctl, in the same order. hack/bench/bench.py times it against the
# controller.
#
# Input (environment):
#   NAME       registry name (pod NAME-pod, container NAME-registry)
#   PORT       published HTTPS port
#   ROOT       registry root (config, tls, secrets)
#   RENDERED   output of `mrctl render -f SPEC` for the same spec: the unit
#              files and config.yml, each under a `# <path>` header, are
#              copied from it, as someone following the docs would
#   HOST       hostname for the certificate (default: localhost)
#   RESTART_SEC  optional: replaces RestartSec= in the container unit
#                (the drift baseline uses the original tool's 30)
#   CERTS_D    default: /etc/containers/certs.d
#   WAIT=1     optional: poll https://HOST:PORT/v2/ until it answers 401
#
# Secrets stay in 0600 files; the password goes to htpasswd on stdin.
set -euo pipefail

: "${NAME:?}" "${PORT:?}" "${ROOT:?}" "${RENDERED:?}"
HOST=${HOST:-localhost}
CERTS_D=${CERTS_D:-/etc/containers/certs.d}
scope=(--user)
umask 077

# 1. Root layout, 0700.
mkdir -p "$ROOT"/config "$ROOT"/tls "$ROOT"/secrets
chmod 0700 "$ROOT" "$ROOT"/config "$ROOT"/tls "$ROOT"/secrets

# 2. A CA and a server certificate (ECDSA P-256, like the controller's).
tls=$ROOT/tls
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" -days 3650 -subj "/CN=$NAME CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$tls/tls.key" -out "$tls/tls.csr" -subj "/CN=$HOST" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' \
    "$HOST" >"$tls/server.ext"
openssl x509 -req -in "$tls/tls.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
    -CAcreateserial -days 365 -extfile "$tls/server.ext" -out "$tls/tls.crt" 2>/dev/null
rm -f "$tls/tls.csr" "$tls/server.ext"
chmod 0644 "$tls/ca.crt" "$tls/tls.crt"

# 3. Credentials: a generated password, bcrypt htpasswd at the cost the
#    controller writes (host::credentials::BCRYPT_COST).
password=$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 || true)
printf 'username: init\npassword: %s\n' "$password" >"$ROOT/secrets/init-credentials"
printf '%s' "$password" | htpasswd -iBC 4 -c "$ROOT/secrets/htpasswd" init 2>/dev/null
unset password

# 4. Unit files and config.yml, copied from the rendered text.
awk -v restart="${RESTART_SEC:-}" '
    /^---$/ { if (out != "") close(out); out = ""; head = 1; next }
    head == 1 {
        head = 0
        if ($0 ~ /^# \//) { out = substr($0, 3); sub(/ \(mode [0-7]+\)$/, "", out) }
        next
    }
    out != "" {
        if (restart != "" && $0 ~ /^RestartSec=/) $0 = "RestartSec=" restart
        print > out
    }
' "$RENDERED"
chmod 0644 "$ROOT/config/registry-config.yml"

# 5. The pod's network (its MTU: render::NETWORK_MTU) and the storage volume.
podman network create --disable-dns --opt mtu=65520 \
    --label app.kubernetes.io/managed-by=mirror-registry \
    --label "io.mirrorregistry.owner=$NAME" "$NAME-network" >/dev/null
podman volume create --label app.kubernetes.io/managed-by=mirror-registry \
    --label "io.mirrorregistry.owner=$NAME" "$NAME-storage" >/dev/null

# 6. The host trusts the CA.
mkdir -p "$CERTS_D/$HOST:$PORT"
install -m 0644 "$tls/ca.crt" "$CERTS_D/$HOST:$PORT/ca.crt"

# 7. systemd: reload, enable, start.
systemctl "${scope[@]}" daemon-reload
systemctl "${scope[@]}" enable --quiet "$NAME-pod.service" "$NAME-registry.service"
systemctl "${scope[@]}" start "$NAME-pod.service" "$NAME-registry.service"

# 8. Optionally wait until it serves.
if [ "${WAIT:-0}" = 1 ]; then
    until [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$tls/ca.crt" \
        --resolve "$HOST:$PORT:127.0.0.1" "https://$HOST:$PORT/v2/")" = 401 ]; do
        sleep 0.02
    done
fi
