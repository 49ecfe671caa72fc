# shellcheck shell=bash
# Source this (`. hack/env.sh`) from bash or zsh to get the variables
# hack/setup-host.sh recorded for this host: XDG_RUNTIME_DIR,
# DBUS_SESSION_BUS_ADDRESS (user scope), MIRROR_REGISTRY_SCOPE and
# MIRROR_REGISTRY_PODMAN_SOCKET. It runs nothing else.
_mirror_registry_hack_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]:-$0}")" && pwd)
if [ -f "$_mirror_registry_hack_dir/.host.env" ]; then
    # shellcheck source=/dev/null
    . "$_mirror_registry_hack_dir/.host.env"
else
    echo "hack/env.sh: $_mirror_registry_hack_dir/.host.env is missing; run hack/setup-host.sh first" >&2
fi
unset _mirror_registry_hack_dir
