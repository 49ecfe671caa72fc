#!/usr/bin/env bash
# One command, offline: prepare this host, build, and bring up a registry
# from the embedded default spec, with the controller kept running to heal
# it. Safe to run again.
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."

hack/setup-host.sh
# shellcheck source=hack/env.sh
. hack/env.sh
scope=${MIRROR_REGISTRY_SCOPE:-system}
watch=${MIRROR_REGISTRY_WATCH_DIR:-/etc/mirror-registry}

echo "==> building (release)"
cargo build --release --locked --bins
install -m 0755 target/release/mirror-registry-controller target/release/mrctl /usr/local/bin/

mkdir -p "$watch"
if ! compgen -G "$watch/*.yaml" >/dev/null && ! compgen -G "$watch/*.yml" >/dev/null; then
    # The embedded default: the CNCF distribution registry, whose image
    # setup-host.sh built locally, so nothing is fetched.
    cat >"$watch/mirror.yaml" <<'SPEC'
# Written by hack/up.sh. Edit it: the controller converges the host to it.
apiVersion: mirrorregistry.io/v1alpha1
kind: MirrorRegistry
metadata:
  name: mirror
spec:
  engine: distribution
  port: 8443
SPEC
    echo "==> wrote $watch/mirror.yaml"
fi

echo "==> converging ($scope scope)"
/usr/local/bin/mirror-registry-controller --scope "$scope" --watch-dir "$watch" --once

# Keep the controller running under systemd: it repairs drift and follows
# edits of the spec; the registry itself runs under its own units.
ctl=(systemctl)
run=(systemd-run)
if [ "$scope" = user ]; then ctl+=(--user); run+=(--user); fi
if "${ctl[@]}" is-active --quiet mirror-registry-controller.service; then
    "${ctl[@]}" restart mirror-registry-controller.service
else
    "${ctl[@]}" reset-failed mirror-registry-controller.service 2>/dev/null || true
    "${run[@]}" --unit mirror-registry-controller --description "mirror-registry controller" \
        --property Restart=always \
        --setenv MIRROR_REGISTRY_SCOPE="$scope" --setenv MIRROR_REGISTRY_WATCH_DIR="$watch" \
        ${XDG_RUNTIME_DIR:+--setenv XDG_RUNTIME_DIR="$XDG_RUNTIME_DIR"} \
        /usr/local/bin/mirror-registry-controller >/dev/null
fi
echo "==> controller running as mirror-registry-controller.service ($scope)"
for f in "$watch"/*.yaml "$watch"/*.yml; do
    [ -f "$f" ] || continue
    echo
    echo "$f:"
    sed -n '/^status:/,$p' "$f" | grep -E '^  (phase|endpoint|caFile|credentialsFile):' || true
done
echo
echo "Log in with: podman login <endpoint host:port> (user and password in the credentialsFile above, mode 0600)"
