#!/usr/bin/env bash
# Build the guest image the VM tests boot: Debian 12 ("bookworm", podman
# 4.3) or Debian 13 ("trixie", podman 5) from Debian's packages only
# (debootstrap, then apt in a chroot), systemd as PID 1 with cgroup v2,
# journald (persistent), the system bus, podman, skopeo and sshd. Nothing of
# this project is in it: hack/test-vm.sh brings the binaries and images at
# test time on a second disk.
#
# The image is cached outside the repository, in
# ${MIRROR_REGISTRY_VM_CACHE:-/var/cache/mirror-registry-vm}/image-KEY/, where
# KEY hashes its inputs: this script, hack/vm/guest-packages, the packages
# hack/setup-host.sh installs, the suite, the archive URLs, debootstrap's
# version and the versions apt gives for every one of those packages (the
# kernel's among them): for Debian 12 this host's own apt lists (the host is
# Debian 12), for Debian 13 lists of its own kept in the cache and refreshed
# at most once a day (kept as they are when the archive does not answer).
# Unchanged inputs print "in place"; changed ones build a new image
# ("built") and remove the previous image of the same release.
# Like hack/setup-host.sh, it installs what it needs on the host first
# (qemu, debootstrap, ...).
#
# Usage: hack/vm/image.sh [--debian 12|13] [--rebuild] [--print-dir]
#   --debian N   which release (default: MIRROR_REGISTRY_VM_DEBIAN, else 12)
#   --rebuild    build even if an image with this KEY is cached
#   --print-dir  print only the image directory (building it if needed;
#                progress then goes to stderr)
set -euo pipefail

VM_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname -- "$(dirname -- "$VM_DIR")")
CACHE=${MIRROR_REGISTRY_VM_CACHE:-/var/cache/mirror-registry-vm}
DEBIAN=${MIRROR_REGISTRY_VM_DEBIAN:-12}
SUITE=
# The suite of the machines this runs on, whose apt lists are the host's own.
HOST_SUITE=bookworm
MIRROR=${MIRROR_REGISTRY_VM_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${MIRROR_REGISTRY_VM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# What the host needs to build and boot the guest.
HOST_PACKAGES=(qemu-system-x86 qemu-utils debootstrap openssh-client e2fsprogs debian-archive-keyring)
HOSTNAME_IN_GUEST=mirror-vm
# The disk is sparse: only what the guest writes takes space.
DISK_SIZE=8G
# Fixed filesystem identity, so the same tree gives the same filesystem.
DISK_UUID=6d697272-6f72-4072-6567-697374727931
DISK_HASH_SEED=6d697272-6f72-4072-6567-697374727932

REBUILD=0
PRINT_DIR=0
BUILD_DIR=
MOUNTED=()

say() {
    if ((PRINT_DIR)); then printf '%s\n' "$*" >&2; else printf '%s\n' "$*"; fi
}
changed() { say "changed: $*"; }
in_place() { say "in place: $*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

unmount_all() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount -l -- "${MOUNTED[i]}" 2>/dev/null || true
    done
    MOUNTED=()
}

cleanup() {
    unmount_all
    if [[ -n $BUILD_DIR && -d $BUILD_DIR ]]; then
        # Never through a mount that is still there (the chroot binds /dev).
        if findmnt -rno TARGET | grep -qF -- "$BUILD_DIR/"; then
            printf 'error: mounts remain under %s; left in place\n' "$BUILD_DIR" >&2
        else
            rm -rf --one-file-system -- "$BUILD_DIR"
        fi
    fi
}
trap cleanup EXIT

package_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]
}

step_host_packages() {
    local missing=() p log
    for p in "${HOST_PACKAGES[@]}"; do
        package_installed "$p" || missing+=("$p")
    done
    # Any qemu-img will do (the host may carry a newer qemu-utils).
    if command -v qemu-img >/dev/null; then
        local wanted=()
        for p in "${missing[@]}"; do [[ $p == qemu-utils ]] || wanted+=("$p"); done
        missing=("${wanted[@]}")
    fi
    if ((${#missing[@]} == 0)); then
        in_place "host packages: ${HOST_PACKAGES[*]}"
        return
    fi
    log=$(mktemp "${TMPDIR:-/tmp}/mirror-registry-vm-apt.XXXXXX")
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        tail -n 30 -- "$log" >&2
        rm -f -- "$log"
        die "apt-get install ${missing[*]} failed"
    fi
    rm -f -- "$log"
    changed "installed host packages: ${missing[*]}"
}

# Words of hack/vm/guest-packages, comments dropped; a line starting
# "SUITE:" counts only for that suite.
listed_packages() {
    sed -e 's/#.*//' -- "$VM_DIR/guest-packages" |
        awk -v suite="$SUITE" '$1 ~ /:$/ { if ($1 != suite ":") next; $1 = "" } { print }' |
        tr -s '[:space:]' '\n' | sed '/^$/d'
}

# The PACKAGES=(...) array of hack/setup-host.sh, read as text.
setup_host_packages() {
    sed -n '/^PACKAGES=(/,/)/p' -- "$REPO_DIR/hack/setup-host.sh" |
        sed -e 's/^PACKAGES=(//' -e 's/)//' -e 's/#.*//' | tr -s '[:space:]' '\n' | sed '/^$/d'
}

guest_packages() {
    { listed_packages; setup_host_packages; } | sort -u
}

# apt's options for the suite's own lists (Debian 13: the host's lists are
# Debian 12's); none for the host's suite.
APT_LISTS=()
suite_apt() {
    local dir=$CACHE/apt-$SUITE
    APT_LISTS=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o Dir::Etc::sourceparts=/nonexistent
        -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o Dir::State::status=/dev/null)
}

# Refreshes the suite's own lists when older than a day; when the archive
# does not answer, lists already there are used as they are.
step_suite_lists() {
    local dir=$CACHE/apt-$SUITE log
    [[ $SUITE == "$HOST_SUITE" ]] && return 0
    suite_apt
    mkdir -p -- "$dir/lists/partial" "$dir/cache/archives/partial"
    printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
        "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SECURITY_MIRROR" "$SUITE" >"$dir/sources.list"
    if [[ -f $dir/updated && -z $(find "$dir/updated" -mmin +1440) ]]; then
        in_place "apt lists of $SUITE (refreshed $(date -r "$dir/updated" -u +%FT%TZ))"
        return 0
    fi
    log=$(mktemp "${TMPDIR:-/tmp}/mirror-registry-vm-apt.XXXXXX")
    if apt-get -q "${APT_LISTS[@]}" update >"$log" 2>&1; then
        touch -- "$dir/updated"
        changed "refreshed the apt lists of $SUITE"
    elif [[ -f $dir/updated ]]; then
        say "warning: the archive did not answer; using the apt lists of $SUITE from $(date -r "$dir/updated" -u +%FT%TZ)"
    else
        tail -n 30 -- "$log" >&2
        rm -f -- "$log"
        die "apt-get update of $SUITE's lists failed (into $dir)"
    fi
    rm -f -- "$log"
}

# Everything the image is made from, one item a line; KEY is its hash.
inputs() {
    local p=()
    printf 'suite %s\nmirror %s\nsecurity %s\n' "$SUITE" "$MIRROR" "$SECURITY_MIRROR"
    printf 'debootstrap %s\n' "$(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || echo none)"
    printf 'script %s\n' "$(sha256sum <"$VM_DIR/image.sh" | cut -c1-64)"
    # Versions as apt's lists give them (the host's for its own suite, the
    # suite's own otherwise; with its security suite, like the guest's): a
    # new kernel or podman is a new image.
    mapfile -t p < <(guest_packages)
    LC_ALL=C apt-cache "${APT_LISTS[@]}" policy -- "${p[@]}" 2>/dev/null |
        awk '/^[^ ].*:$/ { pkg = substr($0, 1, length($0) - 1) }
             /^  Candidate: / { print "package", pkg, $2 }'
}

image_key() { inputs | sha256sum | cut -c1-16; }

# --- the build ----------------------------------------------------------------

mount_into() {
    local root=$1
    mount -t proc proc "$root/proc" && MOUNTED+=("$root/proc")
    mount -t sysfs sysfs "$root/sys" && MOUNTED+=("$root/sys")
    mount --bind /dev "$root/dev" && MOUNTED+=("$root/dev")
    mount --bind /dev/pts "$root/dev/pts" && MOUNTED+=("$root/dev/pts")
}

in_root() {
    local root=$1
    shift
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}

configure_guest() {
    local root=$1
    printf '%s\n' "$HOSTNAME_IN_GUEST" >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        "$HOSTNAME_IN_GUEST" >"$root/etc/hosts"
    # The root disk, and the payload disk hack/test-vm.sh attaches at each
    # boot (read-only: the project's binaries, image archives, the run's ssh
    # key). Under TCG udev may take minutes to announce it: a long bound.
    mkdir -p -- "$root/mnt/payload"
    cat >"$root/etc/fstab" <<'EOF'
/dev/vda	/	ext4	rw,errors=remount-ro	0	1
LABEL=mr-payload	/mnt/payload	ext4	ro,nofail,x-systemd.device-timeout=10min	0	0
EOF
    # DHCP from qemu's user-mode network; no DNS (the guest is air-gapped).
    cat >"$root/etc/systemd/network/20-wired.network" <<'EOF'
[Match]
Name=en*

[Network]
DHCP=ipv4
EOF
    printf '# air-gapped: no name servers\n' >"$root/etc/resolv.conf"
    in_root "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
    # Only keys, and the run's key from the payload disk.
    cat >"$root/etc/ssh/sshd_config.d/mirror-registry-vm.conf" <<'EOF'
AuthorizedKeysFile .ssh/authorized_keys /mnt/payload/ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
    # Logs survive reboots, as the reboot tests read the previous boot.
    mkdir -p -- "$root/var/log/journal"
    # docker-registry is installed for its binary (hack/setup-host.sh builds
    # the registry image from it), not as a service on :5000; apt has
    # nothing to reach.
    in_root "$root" systemctl disable docker-registry.service apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1
    # A new machine id at each first boot of a run (empty, not
    # "uninitialized": no first-boot preset run).
    : >"$root/etc/machine-id"
    rm -f -- "$root/var/lib/dbus/machine-id"
    ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
}

build() {
    local key=$1 dest=$2 root log start kernel
    start=$(date +%s)
    mkdir -p -- "$CACHE"
    BUILD_DIR=$(mktemp -d "$CACHE/build.XXXXXX")
    root=$BUILD_DIR/rootfs
    log=$BUILD_DIR/build.log
    say "    building the Debian $DEBIAN guest image $key (debootstrap $SUITE, then apt in a chroot; a few minutes; log $log)"
    if ! debootstrap --variant=minbase --components=main "$SUITE" "$root" "$MIRROR" >>"$log" 2>&1; then
        tail -n 30 -- "$log" >&2
        die "debootstrap failed"
    fi
    cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
    # Packages start no services in the chroot, and dpkg does not fsync
    # each file (the disk is made from the tree afterwards). Both are
    # removed before the disk is made.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 -- "$root/usr/sbin/policy-rc.d"
    printf 'force-unsafe-io\n' >"$root/etc/dpkg/dpkg.cfg.d/mirror-registry-vm-build"
    mount_into "$root"
    local packages
    mapfile -t packages < <(guest_packages)
    if ! in_root "$root" sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends "$@"' \
        sh "${packages[@]}" >>"$log" 2>&1; then
        tail -n 30 -- "$log" >&2
        die "apt-get install in the guest's root failed"
    fi
    configure_guest "$root"
    # shellcheck disable=SC2016 # dpkg-query's format
    in_root "$root" dpkg-query -W -f='${Package} ${Version}\n' >"$BUILD_DIR/manifest.txt"
    in_root "$root" apt-get clean >>"$log" 2>&1
    unmount_all
    rm -f -- "$root/usr/sbin/policy-rc.d" "$root/etc/dpkg/dpkg.cfg.d/mirror-registry-vm-build"
    rm -rf -- "$root/var/lib/apt/lists/"* "$root/tmp/"* "$root/var/tmp/"*

    kernel=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sort -V | tail -n 1)
    [[ -n $kernel ]] || die "no kernel under $root/boot"
    cp -- "$root/boot/$kernel" "$BUILD_DIR/vmlinuz"
    cp -- "$root/boot/initrd.img-${kernel#vmlinuz-}" "$BUILD_DIR/initrd.img"
    printf '%s\n' "${kernel#vmlinuz-}" >"$BUILD_DIR/kernel-release"
    cp -- "$root/etc/ssh/ssh_host_ed25519_key.pub" "$BUILD_DIR/ssh_host_ed25519_key.pub"
    inputs >"$BUILD_DIR/inputs.txt"
    if ! mkfs.ext4 -q -F -L mr-root -U "$DISK_UUID" -E "hash_seed=$DISK_HASH_SEED" \
        -d "$root" "$BUILD_DIR/disk.img" "$DISK_SIZE" >>"$log" 2>&1; then
        tail -n 30 -- "$log" >&2
        die "mkfs.ext4 of the guest's root failed"
    fi
    rm -rf --one-file-system -- "$root"
    rm -f -- "$log"
    rm -rf -- "$dest"
    mv -- "$BUILD_DIR" "$dest"
    BUILD_DIR=
    BUILT_IN=$(($(date +%s) - start))
}

# Older images of the same release (and those named before there were two
# releases), unless a running guest still uses one (hack/vm/lib.sh holds a
# shared lock on its directory while it boots from it).
remove_others() {
    local keep=$1 d
    for d in "$CACHE"/image-debian"$DEBIAN"-* "$CACHE"/image-????????????????; do
        [[ -d $d && $d != "$keep" ]] || continue
        # shellcheck disable=SC2094 # the lock is the directory itself
        if (flock -n -x 8 && rm -rf -- "$d") 8<"$d"; then
            changed "removed the previous guest image $(basename -- "$d")"
        fi
    done
}

main() {
    local key dest
    while (($# > 0)); do
        case $1 in
        --rebuild) REBUILD=1 ;;
        --debian)
            DEBIAN=${2:?--debian needs 12 or 13}
            shift
            ;;
        --debian=*) DEBIAN=${1#--debian=} ;;
        --print-dir) PRINT_DIR=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
            return 0
            ;;
        *) die "unknown argument: $1 (see --help)" ;;
        esac
        shift
    done
    case $DEBIAN in
    12) SUITE=bookworm ;;
    13) SUITE=trixie ;;
    *) die "--debian (or MIRROR_REGISTRY_VM_DEBIAN): '$DEBIAN' is not 12 or 13" ;;
    esac
    [[ $(id -u) -eq 0 ]] || die "run as root: it installs packages and builds a root filesystem"

    step_host_packages
    mkdir -p -- "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9
    step_suite_lists
    key=$(image_key)
    dest=$CACHE/image-debian$DEBIAN-$key
    if ((!REBUILD)) && [[ -f $dest/disk.img && -f $dest/inputs.txt ]]; then
        in_place "guest image $key (Debian $DEBIAN, kernel $(cat "$dest/kernel-release")) in $dest"
    else
        build "$key" "$dest"
        changed "built guest image $key (Debian $DEBIAN, kernel $(cat "$dest/kernel-release"), $(wc -l <"$dest/manifest.txt") packages) in ${BUILT_IN}s: $dest"
    fi
    remove_others "$dest"
    if ((PRINT_DIR)); then
        printf '%s\n' "$dest"
    fi
}

main "$@"
