# shellcheck shell=bash
# The original's install paths, as guest tests (issue "Install the way the
# original does"), sourced by hack/test-vm.sh after hack/vm/lib.sh; they use
# its ok, not_ok, measure and step, and FAILED.
#
#   ip_payload DIR BIN_DIR  host: two bundles made with `mrctl bundle` from
#                      the binaries in BIN_DIR (the second with another
#                      registry image and another controller binary, for
#                      upgrade), and the offline boot's script, in DIR (the
#                      payload, sealed at the first boot)
#   ip_ssh_install     with the guest up: bad input (a missing file, a wrong
#                      key, an unknown host key, a user without root rights,
#                      a closed port, a host that does not answer, a target
#                      without podman), each refused with nothing left on the
#                      target; then install over ssh from the unpacked
#                      bundle (registry $IP_NAME on the forwarded port
#                      REG_PORT), login and push from this host with TLS
#                      verified through the CA mrctl saved
#   ip_ssh_upgrade     then (other tests may use that registry in between):
#                      upgrade keeping data and credentials, uninstall
#   ip_offline         powers the guest off and boots it with no network
#                      device at all: a one-shot unit unpacks the bundle and
#                      runs `./mrctl install`, which loads the archive
#                      beside it; results come back on the serial console
#   ip_cleanup         what ip_ssh changed on this host (known_hosts, the
#                      saved CA); the caller's exit path runs it

# Not quay: T6's quay engine registry runs beside it.
IP_NAME=remote
IP_INSTALLED=0
IP_OFFLINE_TIMEOUT=1500
IP_REGISTRY=localhost/mirror-registry/distribution:2.8
IP_REGISTRY_NEXT=docker.io/library/registry:2
IP_PAUSE=localhost/mirror-registry/pause:latest
IP_TESTIMAGE=localhost/mirror-registry/testimage:latest
IP_BUNDLE=
IP_NEXT=
IP_CLEAN=0
KNOWN=

# mrctl from the unpacked bundle, against the guest over ssh.
remote() {
    "$IP_BUNDLE/mrctl" "$@"
}

# `mrctl VERB` through ssh that must fail naming $2; nothing may be left.
expect_refused() {
    local what=$1 want=$2 out t0
    shift 2
    t0=$(vm_now)
    if out=$("$@" 2>&1); then
        not_ok "$what: succeeded"
    elif grep -qi -- "$want" <<<"$out"; then
        ok "$what: refused in $(vm_since "$t0")s: $(grep -i -m1 -- "$want" <<<"$out")"
    else
        not_ok "$what: refused without naming '$want': $out"
    fi
    if vm_ssh test -e /opt/mirror-registry; then
        not_ok "$what: /opt/mirror-registry left on the target"
        vm_ssh rm -rf /opt/mirror-registry
    fi
}

# The guest's host key in this user's known_hosts, as after a first
# interactive ssh (ssh reads the passwd entry's home, not $HOME).
trust_guest() {
    mkdir -p ~/.ssh && chmod 0700 ~/.ssh
    printf '%s %s\n' "$KNOWN" "$(cut -d ' ' -f 1,2 <"$VM_IMAGE/ssh_host_ed25519_key.pub")" >>~/.ssh/known_hosts
}
untrust_guest() { ssh-keygen -q -R "$KNOWN" >/dev/null 2>&1 || true; }

ip_cleanup() {
    [[ $IP_CLEAN == 1 ]] || return 0
    untrust_guest
    rm -rf -- "/etc/containers/certs.d/localhost:$REG_PORT"
    IP_CLEAN=0
}

ip_payload() {
    local p=$1 bin=$2 t0
    t0=$(vm_now)
    "$bin/mrctl" bundle -o "$p/mirror-registry-bundle.tar.gz" --engine distribution \
        --registryImage "$IP_REGISTRY" --pauseImage "$IP_PAUSE" >"$VM_RUN/bundle.out" ||
        vm_die "mrctl bundle failed: $(cat "$VM_RUN/bundle.out")"
    measure "mrctl bundle (distribution)" "$(vm_since "$t0")"
    # A second bundle with another registry image, for upgrade, and another
    # controller binary (the same program, bytes appended: another file),
    # which the upgrade must restart the controller onto.
    cp "$bin/mirror-registry-controller" "$VM_RUN/controller-next"
    printf '\nnext\n' >>"$VM_RUN/controller-next"
    "$bin/mrctl" bundle -o "$VM_RUN/next.tar.gz" --engine distribution \
        --registryImage "$IP_REGISTRY_NEXT" --pauseImage "$IP_PAUSE" \
        --controller-bin "$VM_RUN/controller-next" >/dev/null ||
        vm_die "mrctl bundle (next) failed"
    IP_BUNDLE=$VM_RUN/bundle
    IP_NEXT=$VM_RUN/next
    mkdir -p "$IP_BUNDLE" "$IP_NEXT"
    tar -C "$IP_BUNDLE" -xzf "$p/mirror-registry-bundle.tar.gz"
    tar -C "$IP_NEXT" -xzf "$VM_RUN/next.tar.gz"
    ip_offline_script >"$p/offline-install.sh"
    chmod 0755 "$p/offline-install.sh"
}

ip_ssh_install() {
    local key=$VM_RUN/id_ed25519 t0
    # ip_cleanup removes the entry again.
    KNOWN="[127.0.0.1]:$VM_SSH_PORT"
    trust_guest
    IP_CLEAN=1
    local target=(--targetHostname "127.0.0.1:$VM_SSH_PORT" --targetUsername root)

    step "bad input, each refused with nothing left on the target"
    t0=$(vm_now)
    expect_refused "a file in a flag missing on this host" "sslCert $VM_RUN/none.crt: cannot read it on this host" \
        remote install "${target[@]}" -k "$key" --engine distribution --sslCert "$VM_RUN/none.crt" --sslKey "$VM_RUN/none.key"
    ssh-keygen -q -t ed25519 -N '' -f "$VM_RUN/wrong_key"
    expect_refused "a wrong key" "authentication failed" \
        remote install "${target[@]}" -k "$VM_RUN/wrong_key" --engine distribution
    untrust_guest
    expect_refused "an unknown host key" "host key is not known" \
        remote install "${target[@]}" -k "$key" --engine distribution
    trust_guest
    vm_ssh 'id mrnoroot >/dev/null 2>&1 || useradd -m mrnoroot; install -d -m 0700 -o mrnoroot ~mrnoroot/.ssh; cp /mnt/payload/ssh/authorized_keys ~mrnoroot/.ssh/; chown mrnoroot ~mrnoroot/.ssh/authorized_keys'
    expect_refused "a user without root rights" "no root rights" \
        remote install --targetHostname "127.0.0.1:$VM_SSH_PORT" --targetUsername mrnoroot -k "$key" --engine distribution
    expect_refused "a port nothing listens on" "connection refused" \
        remote install --targetHostname "127.0.0.1:$(vm_free_port)" --targetUsername root -k "$key" --engine distribution
    # TEST-NET-2: no answer (dropped, or a connection that never speaks).
    expect_refused "a host that does not answer" "unreachable" \
        remote install --targetHostname 198.51.100.1 --targetUsername root -k "$key" --engine distribution
    vm_ssh 'mv /usr/bin/podman /usr/bin/podman.hidden'
    expect_refused "a target without podman" "podman is not installed" \
        remote install "${target[@]}" -k "$key" --engine distribution
    vm_ssh 'mv /usr/bin/podman.hidden /usr/bin/podman'
    measure "bad input: 7 refusals" "$(vm_since "$t0")"

    step "install over ssh"
    t0=$(vm_now)
    if remote install "${target[@]}" -k "$key" --name "$IP_NAME" --engine distribution \
        --quayHostname "localhost:$REG_PORT" </dev/null >"$VM_RUN/install.out" 2>&1; then
        ok "mrctl install --targetHostname: Ready in $(vm_since "$t0")s"
    else
        not_ok "mrctl install --targetHostname failed"
    fi
    sed 's/\(Password: *\).*/\1(printed)/' "$VM_RUN/install.out" | sed 's/^/      | /'
    measure "install over ssh: copy, install, Ready" "$(vm_since "$t0")"
    local ca=/etc/containers/certs.d/localhost:$REG_PORT/ca.crt user pw auth=$VM_RUN/ip-auth.json
    [[ -f $ca ]] && ok "CA saved to $ca" || not_ok "no CA at $ca"
    user=$(sed -n 's/^ *Username: *//p' "$VM_RUN/install.out")
    pw=$(sed -n 's/^ *Password: *//p' "$VM_RUN/install.out")
    if printf '%s' "$pw" | podman login --authfile "$auth" -u "$user" --password-stdin "localhost:$REG_PORT" >/dev/null 2>&1; then
        ok "podman login with TLS verified"
    else
        not_ok "podman login"
    fi
    t0=$(vm_now)
    if skopeo --command-timeout 120s copy -q --authfile "$auth" "containers-storage:$IP_TESTIMAGE" \
        "docker://localhost:$REG_PORT/test/image:1" 2>"$VM_RUN/push.err"; then
        ok "pushed from this host"
    else
        not_ok "push: $(cat "$VM_RUN/push.err")"
    fi
    measure "push from this host (TLS verified)" "$(vm_since "$t0")"
    # The registry stays for the tests between this and ip_ssh_upgrade.
    [[ $FAILED == 0 ]] && IP_INSTALLED=1
    return 0
}

ip_ssh_upgrade() {
    local key=$VM_RUN/id_ed25519 t0 auth=$VM_RUN/ip-auth.json
    KNOWN="[127.0.0.1]:$VM_SSH_PORT"
    [[ $IP_CLEAN == 1 ]] || {
        trust_guest
        IP_CLEAN=1
    }
    local target=(--targetHostname "127.0.0.1:$VM_SSH_PORT" --targetUsername root)
    step "upgrade over ssh to another image (the bundle's, found beside mrctl)"
    local pid_before pid_after unit=mirror-registry-controller.service
    pid_before=$(vm_ssh "systemctl show -p MainPID --value $unit")
    t0=$(vm_now)
    if "$IP_NEXT/mrctl" upgrade "${target[@]}" -k "$key" --name "$IP_NAME" \
        </dev/null >"$VM_RUN/upgrade.out" 2>&1; then
        ok "mrctl upgrade --targetHostname in $(vm_since "$t0")s"
    else
        not_ok "upgrade failed: $(tail -5 "$VM_RUN/upgrade.out")"
    fi
    sed 's/^/      | /' "$VM_RUN/upgrade.out"
    measure "upgrade over ssh: copy, load, Ready" "$(vm_since "$t0")"
    pid_after=$(vm_ssh "systemctl show -p MainPID --value $unit")
    if [[ $pid_after != "$pid_before" && $pid_after != 0 ]] &&
        vm_ssh "readlink /proc/$pid_after/exe" | grep -qvF '(deleted)' &&
        vm_ssh "cmp -s /proc/$pid_after/exe /opt/mirror-registry/mirror-registry-controller"; then
        ok "the controller restarted onto the new binary (pid $pid_before -> $pid_after)"
    else
        not_ok "the controller still runs the old binary (pid $pid_before -> $pid_after)"
    fi
    if vm_ssh "podman inspect --format '{{.ImageName}}' $IP_NAME-registry" | grep -qF "$IP_REGISTRY_NEXT"; then
        ok "the registry runs $IP_REGISTRY_NEXT"
    else
        not_ok "the registry does not run $IP_REGISTRY_NEXT"
    fi
    if skopeo --command-timeout 60s inspect --authfile "$auth" "docker://localhost:$REG_PORT/test/image:1" >/dev/null 2>&1; then
        ok "the pushed image and the credentials survived the upgrade"
    else
        not_ok "the pushed image is gone or the credentials changed"
    fi

    step "uninstall over ssh"
    t0=$(vm_now)
    if remote uninstall "${target[@]}" -k "$key" --name "$IP_NAME" </dev/null >"$VM_RUN/uninstall.out" 2>&1; then
        ok "mrctl uninstall --targetHostname"
    else
        not_ok "uninstall failed: $(tail -5 "$VM_RUN/uninstall.out")"
    fi
    if vm_ssh "test ! -e /etc/systemd/system/$IP_NAME-registry.service"; then
        ok "its units are gone"
    else
        not_ok "units left"
    fi
    if [[ -z $(vm_ssh "podman pod ps -q --filter name=^$IP_NAME-pod\$; podman ps -aq --filter label=io.mirrorregistry.owner=$IP_NAME") ]]; then
        ok "its pod and containers are gone"
    else
        not_ok "its pod or containers are left"
    fi
    if vm_ssh "podman volume exists $IP_NAME-storage"; then
        ok "its data kept (volume $IP_NAME-storage; no --autoApprove)"
    else
        not_ok "volume $IP_NAME-storage is gone"
    fi
    measure "uninstall over ssh" "$(vm_since "$t0")"
    rm -rf "/etc/containers/certs.d/localhost:$REG_PORT"
    # Boot 2 starts from nothing: no images (so the archive must be
    # loaded), no copied files.
    vm_ssh "podman rmi -f $IP_REGISTRY $IP_REGISTRY_NEXT $IP_PAUSE >/dev/null 2>&1; rm -rf /opt/mirror-registry; podman images --format '{{.Repository}}:{{.Tag}}'" >"$VM_RUN/images-left"
    if grep -qF -e "$IP_REGISTRY" -e "$IP_PAUSE" "$VM_RUN/images-left"; then
        not_ok "the bundle's images are still in the guest: $(tr '\n' ' ' <"$VM_RUN/images-left")"
    fi

    ip_cleanup
}

ip_offline() {
    local t0
    vm_ssh 'cat >/etc/systemd/system/mr-offline-install.service <<EOF
[Unit]
Description=offline install test
# As an admin who logs in once the boot is done: with no network device,
# systemd-networkd-wait-online takes its full 2 minutes to give up, and
# the controller unit (After=network-online.target) would wait for it.
Wants=network-online.target
After=multi-user.target network-online.target
[Service]
Type=oneshot
StandardOutput=journal+console
StandardError=journal+console
ExecStart=/mnt/payload/offline-install.sh
ExecStopPost=/bin/systemctl --no-block poweroff
[Install]
WantedBy=multi-user.target
EOF
systemctl enable mr-offline-install.service >/dev/null 2>&1'
    vm_poweroff 300 || true
    VM_NIC=none vm_boot
    t0=$(vm_now)
    vm_wait_off "$IP_OFFLINE_TIMEOUT" || not_ok "the offline guest did not power off within ${IP_OFFLINE_TIMEOUT}s"
    measure "boot 2 (no network): power on to power off" "$(vm_since "$t0")"
    grep -a 'OFFLINE ' "$VM_RUN/serial.log" | sed 's/^.*OFFLINE /    /'
    grep -aq 'OFFLINE ok: Ready' "$VM_RUN/serial.log" || not_ok "offline install: not Ready"
    if grep -aq 'OFFLINE not ok' "$VM_RUN/serial.log"; then FAILED=1; fi
}

# The guest's side of the offline boot.
ip_offline_script() {
    cat <<'EOS'
#!/bin/bash
say() { printf 'OFFLINE %s\n' "$*"; }
links=$(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')
[[ $links == "lo " ]] && say "ok: no network device (links: $links)" || say "not ok: network devices: $links"
d=/root/offline && rm -rf "$d" && mkdir -p "$d" && cd "$d" || exit 1
tar -xzf /mnt/payload/mirror-registry-bundle.tar.gz
t0=$(date +%s)
if ./mrctl install --name offline --engine distribution --quayHostname localhost:9555 </dev/null >install.out 2>&1; then
    say "ok: Ready after $(( $(date +%s) - t0 ))s"
else
    say "not ok: install failed"
    journalctl -b --no-pager -u mirror-registry-controller.service | tail -n 40 | sed 's/^/OFFLINE   journal| /'
fi
sed -e 's/\(Password: *\).*/\1(printed)/' -e 's/^/OFFLINE   | /' install.out
grep -q 'image archive beside mrctl' install.out && say "ok: the archive beside mrctl was found" || say "not ok: archive not found"
grep -q '100%' install.out && say "ok: load progress shown" || say "not ok: no load progress"
EOS
}
