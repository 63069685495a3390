#!/usr/bin/env bash
# Sets up, on a bare Debian 12 machine (as root), everything reroot's tests and demo need:
#   - LXD 5.0.2 from Debian's packages, started without systemd, with a btrfs storage pool
#     and a root disk in the default profile;
#   - Incus 6.0 from Debian's bookworm-backports, beside LXD (its own socket, pool and images),
#     set up the same way, so that the integration tests can run against either daemon;
#   - ZFS through zfs-fuse, with a small file-backed pool;
#   - a btrfs filesystem on a loop file, for btrfs subvolumes used as external filesystems;
#   - two offline busybox images that differ by /etc/template-version ("old" and "new"),
#     imported into both daemons under the same aliases;
#   - an sshd on 127.0.0.1:2222 only, started without systemd, that lets root in with a key of
#     the testbed's own (copy-filesystems over ssh).
#
# Idempotent: every step first looks at what is there and does only what is missing, so it is
# safe to run twice, and after a previous run was killed. It prints each step and stops at the
# first failure with a message naming it.
#
# Names can be changed through the environment (defaults in brackets):
#   REROOT_TESTBED_DIR [/var/lib/reroot-testbed]  loop files and the image build directory
#   REROOT_ZFS_POOL    [rerootz]                  the ZFS pool
#   REROOT_ZFS_POOL2   [rerootz2]                 a second pool (copies between pools)
#   REROOT_BTRFS_MOUNT [/srv/reroot-btrfs]        where the btrfs loop filesystem is mounted
#   REROOT_LXD_POOL    [default]                  the LXD and Incus storage pools (btrfs)
set -euo pipefail

TESTBED_DIR=${REROOT_TESTBED_DIR:-/var/lib/reroot-testbed}
ZFS_POOL=${REROOT_ZFS_POOL:-rerootz}
ZFS_POOL2=${REROOT_ZFS_POOL2:-rerootz2}
BTRFS_MOUNT=${REROOT_BTRFS_MOUNT:-/srv/reroot-btrfs}
LXD_POOL=${REROOT_LXD_POOL:-default}
LXD_LOG=/var/log/reroot-testbed-lxd.log
INCUS_LOG=/var/log/reroot-testbed-incus.log
ZFS_LOG=/var/log/reroot-testbed-zfs-fuse.log
# bsdutils: `script`, which gives the destroy test a terminal to answer in.
PACKAGES=(lxd lxd-client btrfs-progs busybox-static rsync zfs-fuse util-linux bsdutils man-db
    openssh-server openssh-client)
# man-db: tests/docs.rs renders `reroot man` with `man -l`; a bare Debian image lacks it.
# openssh-server: only its sshd program is used, started below on its own port and config (the
# package's own service is left as the machine has it).
# Incus is only in bookworm-backports (bookworm itself has none).
BACKPORTS_PACKAGES=(incus)
BACKPORTS_LIST=/etc/apt/sources.list.d/reroot-bookworm-backports.list

current="starting"
step() {
    current="$*"
    printf '==> %s\n' "$*"
}
say() { printf '    %s\n' "$*"; }
fail() {
    printf 'testbed: FAILED at step "%s": %s\n' "$current" "$*" >&2
    exit 1
}
trap 'fail "command failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

[ "$(id -u)" = 0 ] || fail "must run as root (it installs packages and starts daemons)"
mkdir -p "$TESTBED_DIR"

# ---------------------------------------------------------------------------------------------
step "packages: ${PACKAGES[*]}"
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing: ${missing[*]}"
    apt-get update -qq || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
        fail "apt-get install ${missing[*]} failed"
else
    say "all installed"
fi

step "packages from bookworm-backports: ${BACKPORTS_PACKAGES[*]}"
missing=()
for p in "${BACKPORTS_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    # Added only when no source names the suite already, so that apt never sees it twice.
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo 'deb http://deb.debian.org/debian bookworm-backports main' >"$BACKPORTS_LIST"
        say "added bookworm-backports to apt's sources ($BACKPORTS_LIST)"
    fi
    say "installing: ${missing[*]}"
    apt-get update -qq || fail "apt-get update failed"
    # The package's scripts try to start incus through systemd, which is not there: the
    # daemon is started below, by hand.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports "${missing[@]}" \
        >/dev/null || fail "apt-get install -t bookworm-backports ${missing[*]} failed"
else
    say "all installed"
fi

# Starts a daemon fully detached: its own session, no inherited descriptors, output in a log,
# so that it never holds the caller's (CI's) stdout or stderr open.
detach() {
    local log=$1
    shift
    setsid "$@" </dev/null >>"$log" 2>&1 &
}

# ---------------------------------------------------------------------------------------------
step "ZFS (zfs-fuse) with pool $ZFS_POOL"
zfs_img="$TESTBED_DIR/zfs.img"
# A stopped or hung zfs-fuse makes zpool wait forever: ask with a bound.
zfs_answers() { timeout 2 zpool list >/dev/null 2>&1; }
zfs_gone() { ! pgrep -x zfs-fuse >/dev/null; }
# within SECONDS CMD...: runs CMD every 0.2 s until it succeeds, for at most SECONDS.
within() {
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.2
    done
}
# The mounts zfs-fuse serves: its datasets (type fuse.zfs) and its /zfs-kstat. Deepest first.
zfs_mounts() {
    awk '$3 == "fuse.zfs" || ($3 ~ /^fuse/ && $2 == "/zfs-kstat") {print $2}' /proc/mounts | sort -ru
}
# A zfs-fuse process that is still there may be one killed a moment ago: give it 5 s to answer,
# then kill what is left of it.
if pgrep -x zfs-fuse >/dev/null; then
    if ! within 5 zfs_answers; then
        say "a zfs-fuse process is there but does not answer: killing it"
        pkill -9 -x zfs-fuse || true
        within 10 zfs_gone || true
    fi
fi
if zfs_answers; then
    say "zfs-fuse already running"
else
    # With no zfs-fuse serving them, every zfs-fuse mount is dead ("Transport endpoint is not
    # connected"): a killed zfs-fuse leaves them behind, possibly stacked on one another, and
    # zfs cannot mount the datasets again until they are gone.
    for _ in 1 2 3 4 5; do
        dead=$(zfs_mounts)
        [ -n "$dead" ] || break
        say "unmounting dead zfs-fuse mounts: $(echo $dead)"
        # A mount below a dead one may refuse to go on its own; the lazy unmount of the one
        # above takes it along, and the loop looks again.
        for m in $dead; do
            umount -l "$m" 2>/dev/null || true
        done
    done
    [ -z "$(zfs_mounts)" ] || fail "cannot unmount dead zfs-fuse mounts: $(zfs_mounts | tr '\n' ' ')"
    say "starting zfs-fuse (log: $ZFS_LOG)"
    rm -f /run/zfs-fuse.pid /var/run/zfs-fuse.pid
    detach "$ZFS_LOG" zfs-fuse --no-daemon
    within 10 zfs_answers || fail "zfs-fuse did not answer within 10 s (see $ZFS_LOG)"
fi
# ensure_pool NAME IMAGE SIZE: the pool imported, or made on a sparse file.
ensure_pool() {
    pool=$1 img=$2 size=$3
    if zpool list -H -o name "$pool" >/dev/null 2>&1; then
        health=$(zpool list -H -o health "$pool")
        if [ "$health" != ONLINE ] && [ ! -f "$img" ]; then
            # zfs-fuse remembered the pool (zpool.cache) but its file is gone: the record is stale.
            say "pool $pool is $health and $img is gone: forgetting the stale pool"
            zpool destroy -f "$pool" >/dev/null 2>&1 || zpool export -f "$pool" ||
                fail "cannot drop the stale pool $pool"
        else
            [ "$health" = ONLINE ] || fail "pool $pool is $health (zpool status $pool tells why)"
            say "pool $pool present"
        fi
    fi
    if ! zpool list -H -o name "$pool" >/dev/null 2>&1; then
        if [ -f "$img" ]; then
            say "importing pool $pool from $img"
            zpool import -d "$TESTBED_DIR" -f "$pool" || fail "zpool import of $img failed"
        else
            say "creating pool $pool on $img ($size)"
            truncate -s "$size" "$img"
            zpool create -f "$pool" "$img" || fail "zpool create failed"
        fi
    fi
}
ensure_pool "$ZFS_POOL" "$zfs_img" 1G
# A second pool, for copies between pools (reroot copy-filesystems).
ensure_pool "$ZFS_POOL2" "$TESTBED_DIR/zfs2.img" 512M
mount_out=$(zfs mount -a 2>&1) || true
if [ "$(zfs get -H -o value mounted "$ZFS_POOL")" != yes ] || ! stat "/$ZFS_POOL" >/dev/null 2>&1; then
    fail "pool $ZFS_POOL is not mounted at /$ZFS_POOL; zfs mount -a said: ${mount_out:-nothing}"
fi
[ -z "$mount_out" ] || say "zfs mount -a: $mount_out"

# ---------------------------------------------------------------------------------------------
step "btrfs filesystem at $BTRFS_MOUNT"
btrfs_img="$TESTBED_DIR/btrfs.img"
if mountpoint -q "$BTRFS_MOUNT"; then
    say "already mounted"
else
    if [ ! -f "$btrfs_img" ]; then
        say "creating $btrfs_img (2 GiB)"
        truncate -s 2G "$btrfs_img"
        mkfs.btrfs -q "$btrfs_img" || fail "mkfs.btrfs failed"
    fi
    mkdir -p "$BTRFS_MOUNT"
    mount -o loop "$btrfs_img" "$BTRFS_MOUNT" || fail "cannot mount $btrfs_img on $BTRFS_MOUNT"
    say "mounted"
fi

# ---------------------------------------------------------------------------------------------
step "LXD daemon"
if lxd waitready --timeout 1 >/dev/null 2>&1; then
    say "already running ($(lxc query /1.0 | sed -n 's/.*"server_version": "\([^"]*\)".*/\1/p' | head -1))"
else
    say "starting lxd (log: $LXD_LOG)"
    detach "$LXD_LOG" lxd --group root --logfile "$LXD_LOG"
    lxd waitready --timeout 60 || fail "LXD did not become ready within 60 s (see $LXD_LOG)"
    say "ready"
fi

step "LXD storage pool $LXD_POOL and root disk"
if lxc storage show "$LXD_POOL" >/dev/null 2>&1; then
    say "pool present"
else
    lxc storage create "$LXD_POOL" btrfs size=5GiB >/dev/null || fail "lxc storage create failed"
    say "created btrfs pool $LXD_POOL (5 GiB loop file)"
fi
if lxc profile device show default | grep -q '^root:'; then
    say "default profile has a root disk"
else
    lxc profile device add default root disk path=/ pool="$LXD_POOL" >/dev/null
    say "added root disk to the default profile"
fi

# ---------------------------------------------------------------------------------------------
step "Incus daemon"
if incus admin waitready --timeout 1 >/dev/null 2>&1; then
    say "already running ($(incus query /1.0 | sed -n 's/.*"server_version": "\([^"]*\)".*/\1/p' | head -1))"
else
    say "starting incusd (log: $INCUS_LOG)"
    detach "$INCUS_LOG" /usr/libexec/incus/incusd --group root --logfile "$INCUS_LOG"
    incus admin waitready --timeout 60 || fail "Incus did not become ready within 60 s (see $INCUS_LOG)"
    say "ready"
fi

# The same kind of pool as LXD's (btrfs on its own loop file under /var/lib/incus/disks), so
# that copies from snapshots are copy-on-write on both daemons and the tests see the same
# behaviour.
step "Incus storage pool $LXD_POOL and root disk"
if incus storage show "$LXD_POOL" >/dev/null 2>&1; then
    driver=$(incus storage show "$LXD_POOL" | sed -n 's/^driver: //p')
    [ "$driver" = btrfs ] || fail "Incus pool $LXD_POOL exists with driver '$driver', not btrfs"
    say "pool present"
else
    incus storage create "$LXD_POOL" btrfs size=5GiB >/dev/null || fail "incus storage create failed"
    say "created btrfs pool $LXD_POOL (5 GiB loop file)"
fi
if incus profile device show default | grep -q '^root:'; then
    say "default profile has a root disk"
else
    incus profile device add default root disk path=/ pool="$LXD_POOL" >/dev/null
    say "added root disk to the default profile"
fi

# ---------------------------------------------------------------------------------------------
# The images: a static busybox with every applet linked, an init that mounts /proc and keeps a
# process alive, and a marker file telling which template it is.
build_image() {
    local alias=$1 version=$2
    local dir="$TESTBED_DIR/image-$alias"
    rm -rf "$dir"
    mkdir -p "$dir/rootfs"
    local r="$dir/rootfs"
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,tmp,run,root,home,var/log,var/lib,mnt}
    chmod 1777 "$r/tmp"
    chmod 700 "$r/root"
    cp /bin/busybox "$r/bin/busybox"
    for applet in $("$r/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$r/bin/$applet"
    done
    ln -sf ../bin/busybox "$r/sbin/init"
    cat >"$r/etc/inittab" <<'EOF'
::sysinit:/bin/mount -t proc proc /proc
::respawn:/bin/sleep 100000
EOF
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
    printf 'root:*:19000:0:99999:7:::\n' >"$r/etc/shadow"
    chmod 600 "$r/etc/shadow"
    printf '/bin/sh\n' >"$r/etc/shells"
    printf '%s\n' "$version" >"$r/etc/template-version"
    cat >"$dir/metadata.yaml" <<EOF
architecture: x86_64
creation_date: $(date +%s)
properties:
  os: busybox
  release: "$version"
  description: reroot test image ($version template)
EOF
    tar -C "$dir" -czf "$dir/image.tar.gz" metadata.yaml rootfs
    # Kept: Incus imports the same tarball when it lacks the image.
    mv "$dir/image.tar.gz" "$TESTBED_DIR/image-$alias.tar.gz"
    rm -rf "$dir"
}

step "busybox images reroot-old and reroot-new (LXD and Incus)"
for pair in reroot-old:old reroot-new:new; do
    alias=${pair%%:*}
    version=${pair#*:}
    tarball="$TESTBED_DIR/image-$alias.tar.gz"
    for cli in lxc incus; do
        if "$cli" image info "$alias" >/dev/null 2>&1; then
            say "$cli: $alias present"
            continue
        fi
        # One tarball for both daemons; built again when a previous run did not keep it.
        [ -f "$tarball" ] || build_image "$alias" "$version"
        "$cli" image import "$tarball" --alias "$alias" >/dev/null || fail "$cli image import $alias failed"
        say "$cli: $alias imported (/etc/template-version = $version)"
    done
done

# An image server for `image: REMOTE:ALIAS` (tests/rebuild.rs): each daemon serves reroot-old
# publicly (a daemon pulls an image as an untrusted client of the other, so it sees public
# images only) under an alias the other daemon does not have. reroot-new stays private: the
# test that a private image is refused before anything changes uses it.
step "reroot-old served to the other daemon (public, alias reroot-served-by-lxc/-incus)"
for cli in lxc incus; do
    fp=$("$cli" image info reroot-old | sed -n 's/^Fingerprint: //p')
    [ -n "$fp" ] || fail "$cli: no fingerprint for reroot-old"
    if [ "$("$cli" query "/1.0/images/$fp" | grep -o '"public": [a-z]*')" != '"public": true' ]; then
        "$cli" query -X PATCH "/1.0/images/$fp" --data '{"public": true}' >/dev/null ||
            fail "$cli: cannot make reroot-old public"
        say "$cli: reroot-old made public"
    fi
    served="reroot-served-by-$cli"
    if ! "$cli" image alias list --format csv | grep -q "^$served,"; then
        "$cli" image alias create "$served" "$fp" >/dev/null || fail "$cli: alias $served"
        say "$cli: alias $served -> ${fp:0:12}"
    fi
done

# ---------------------------------------------------------------------------------------------
# BEGIN remote-https: LXD's and Incus's APIs over HTTPS on the loopback, for tests/remote.rs
# (`--remote`) and the runs over two daemons in tests/crash.rs (`remote:` in a config).
# Under $TESTBED_DIR/remote:
#   trusted/client.{crt,key}    a client certificate LXD and Incus trust
#   untrusted/client.{crt,key}  one they do not (never added)
#   lxc-conf/                   an lxc client configuration dir (LXD_CONF=...): config.yml
#                               naming the remotes "loopback" (LXD) and "incus-loopback"
#                               (Incus), client.crt/key (the trusted pair) and
#                               servercerts/NAME.crt (each daemon's server.crt, pinned)
REMOTE_HTTPS_ADDR=127.0.0.1:8443
INCUS_HTTPS_ADDR=127.0.0.1:8444
setup_remote_https() {
    local dir="$TESTBED_DIR/remote" conf="$TESTBED_DIR/remote/lxc-conf" current_addr fp kind
    step "LXD over HTTPS at $REMOTE_HTTPS_ADDR, client certificates and config in $dir"
    command -v openssl >/dev/null || {
        apt-get update -qq || fail "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null ||
            fail "apt-get install openssl failed"
    }
    current_addr=$(lxc config get core.https_address) || fail "lxc config get core.https_address failed"
    if [ "$current_addr" = "$REMOTE_HTTPS_ADDR" ]; then
        say "core.https_address already $REMOTE_HTTPS_ADDR"
    else
        lxc config set core.https_address "$REMOTE_HTTPS_ADDR" ||
            fail "lxc config set core.https_address $REMOTE_HTTPS_ADDR failed (was '$current_addr')"
        say "core.https_address set to $REMOTE_HTTPS_ADDR (was '${current_addr}')"
    fi
    local tries=0
    until (exec 3<>"/dev/tcp/${REMOTE_HTTPS_ADDR%:*}/${REMOTE_HTTPS_ADDR#*:}") 2>/dev/null; do
        tries=$((tries + 1))
        [ "$tries" -lt 50 ] || fail "LXD does not listen on $REMOTE_HTTPS_ADDR after 10 s"
        sleep 0.2
    done
    mkdir -p "$dir/trusted" "$dir/untrusted" "$conf/servercerts"
    for kind in trusted untrusted; do
        if openssl x509 -in "$dir/$kind/client.crt" -noout -checkend 86400 >/dev/null 2>&1 &&
            [ -s "$dir/$kind/client.key" ]; then
            say "$kind client certificate present"
        else
            # Valid for 30 days; renewed here when it has less than a day left.
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1 -nodes \
                -keyout "$dir/$kind/client.key" -out "$dir/$kind/client.crt" -days 30 \
                -subj "/CN=reroot-testbed-$kind" >/dev/null 2>&1 ||
                fail "openssl could not make the $kind client certificate"
            chmod 600 "$dir/$kind/client.key"
            say "$kind client certificate made"
        fi
    done
    fp=$(openssl x509 -in "$dir/trusted/client.crt" -noout -fingerprint -sha256 |
        cut -d= -f2 | tr -d : | tr 'A-F' 'a-f')
    if lxc query "/1.0/certificates/$fp" >/dev/null 2>&1; then
        say "trusted certificate already in LXD's trust store"
    else
        lxc config trust add "$dir/trusted/client.crt" --name reroot-testbed-trusted ||
            fail "lxc config trust add $dir/trusted/client.crt failed"
        say "trusted certificate added to LXD's trust store"
    fi
    fp=$(openssl x509 -in "$dir/untrusted/client.crt" -noout -fingerprint -sha256 |
        cut -d= -f2 | tr -d : | tr 'A-F' 'a-f')
    if lxc query "/1.0/certificates/$fp" >/dev/null 2>&1; then
        fail "the untrusted certificate $dir/untrusted/client.crt is in LXD's trust store: remove it (lxc config trust remove ${fp:0:12})"
    fi
    cp "$dir/trusted/client.crt" "$dir/trusted/client.key" "$conf/"
    cp /var/lib/lxd/server.crt "$conf/servercerts/loopback.crt"
    # The pin must be what LXD presents on the port (a cluster member would present the
    # cluster certificate instead of server.crt).
    openssl s_client -connect "$REMOTE_HTTPS_ADDR" </dev/null 2>/dev/null |
        openssl x509 -outform DER >"$dir/presented.der" 2>/dev/null ||
        fail "cannot read the certificate LXD presents on $REMOTE_HTTPS_ADDR"
    openssl x509 -in "$conf/servercerts/loopback.crt" -outform DER | cmp -s - "$dir/presented.der" ||
        fail "LXD presents another certificate on $REMOTE_HTTPS_ADDR than /var/lib/lxd/server.crt"
    rm -f "$dir/presented.der"
    # Incus the same way, on its own port.
    current_addr=$(incus config get core.https_address) || fail "incus config get core.https_address failed"
    if [ "$current_addr" = "$INCUS_HTTPS_ADDR" ]; then
        say "Incus core.https_address already $INCUS_HTTPS_ADDR"
    else
        incus config set core.https_address "$INCUS_HTTPS_ADDR" ||
            fail "incus config set core.https_address $INCUS_HTTPS_ADDR failed (was '$current_addr')"
        say "Incus core.https_address set to $INCUS_HTTPS_ADDR (was '${current_addr}')"
    fi
    tries=0
    until (exec 3<>"/dev/tcp/${INCUS_HTTPS_ADDR%:*}/${INCUS_HTTPS_ADDR#*:}") 2>/dev/null; do
        tries=$((tries + 1))
        [ "$tries" -lt 50 ] || fail "Incus does not listen on $INCUS_HTTPS_ADDR after 10 s"
        sleep 0.2
    done
    fp=$(openssl x509 -in "$dir/trusted/client.crt" -noout -fingerprint -sha256 |
        cut -d= -f2 | tr -d : | tr 'A-F' 'a-f')
    if incus query "/1.0/certificates/$fp" >/dev/null 2>&1; then
        say "trusted certificate already in Incus's trust store"
    else
        incus config trust add-certificate "$dir/trusted/client.crt" --name reroot-testbed-trusted ||
            fail "incus config trust add-certificate $dir/trusted/client.crt failed"
        say "trusted certificate added to Incus's trust store"
    fi
    cp /var/lib/incus/server.crt "$conf/servercerts/incus-loopback.crt"
    openssl s_client -connect "$INCUS_HTTPS_ADDR" </dev/null 2>/dev/null |
        openssl x509 -outform DER >"$dir/presented.der" 2>/dev/null ||
        fail "cannot read the certificate Incus presents on $INCUS_HTTPS_ADDR"
    openssl x509 -in "$conf/servercerts/incus-loopback.crt" -outform DER | cmp -s - "$dir/presented.der" ||
        fail "Incus presents another certificate on $INCUS_HTTPS_ADDR than /var/lib/incus/server.crt"
    rm -f "$dir/presented.der"
    cat >"$conf/config.yml" <<EOF
default-remote: local
remotes:
  local:
    addr: unix://
    public: false
  loopback:
    addr: https://$REMOTE_HTTPS_ADDR
    auth_type: tls
    protocol: lxd
    public: false
  incus-loopback:
    addr: https://$INCUS_HTTPS_ADDR
    auth_type: tls
    protocol: incus
    public: false
aliases: {}
EOF
    # The check that matters: the trusted pair is trusted over HTTPS, the other is not.
    remote_auth() {
        LXD_CONF="$conf" lxc query "$1:/1.0" 2>/dev/null | sed -n 's/.*"auth": "\([a-z]*\)".*/\1/p' | head -1
    }
    [ "$(remote_auth loopback)" = trusted ] ||
        fail "LXD does not answer \"auth\": \"trusted\" over HTTPS with $conf/client.crt"
    say "lxc with LXD_CONF=$conf: remote loopback answers auth: trusted"
    [ "$(remote_auth incus-loopback)" = trusted ] ||
        fail "Incus does not answer \"auth\": \"trusted\" over HTTPS with $conf/client.crt"
    say "lxc with LXD_CONF=$conf: remote incus-loopback answers auth: trusted"
}
setup_remote_https
# END remote-https

# ---------------------------------------------------------------------------------------------
# BEGIN ssh: an sshd on the loopback for copy-filesystems over ssh (tests/copy_ssh.rs), with a
# configuration of its own so that the machine's sshd settings (if it runs one) are neither
# read nor changed. It lets in root with the testbed's key only, from this machine only.
# Under $TESTBED_DIR/ssh:
#   id_ed25519{,.pub}  the client key (no passphrase), the only one this sshd accepts
#   authorized_keys    that key, read by this sshd alone (not ~root/.ssh/authorized_keys)
#   known_hosts        the host keys as [127.0.0.1]:2222, for UserKnownHostsFile=
#   sshd_config        the daemon's configuration (sshd -f)
SSH_ADDR=127.0.0.1
SSH_PORT=2222
SSH_LOG=/var/log/reroot-testbed-sshd.log
SSH_DIR="$TESTBED_DIR/ssh"
# The options a client needs, as the tests pass them (--ssh-option KEY=VALUE each).
SSH_CLIENT_OPTIONS=(-o BatchMode=yes -o "Port=$SSH_PORT" -o "IdentityFile=$SSH_DIR/id_ed25519"
    -o "UserKnownHostsFile=$SSH_DIR/known_hosts" -o StrictHostKeyChecking=yes)
# Whether something answers on the port with an SSH banner (bounded: a hung one is "no").
ssh_answers() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$SSH_ADDR/$SSH_PORT && head -c 4 <&3" 2>/dev/null |
        grep -q '^SSH-'
}
setup_ssh() {
    local dir=$SSH_DIR made k line
    step "sshd on $SSH_ADDR:$SSH_PORT, root's key and known_hosts in $dir"
    [ -x /usr/sbin/sshd ] || fail "/usr/sbin/sshd is missing (package openssh-server)"
    mkdir -p "$dir"
    chmod 700 "$dir"
    # Host keys: ssh-keygen -A makes only the missing ones, and says which.
    made=$(ssh-keygen -A 2>&1) || fail "ssh-keygen -A failed: $made"
    if [ -n "$made" ]; then say "host keys: $made"; else say "host keys present"; fi
    if [ -s "$dir/id_ed25519" ] && [ -s "$dir/id_ed25519.pub" ]; then
        say "client key present"
    else
        rm -f "$dir/id_ed25519" "$dir/id_ed25519.pub"
        ssh-keygen -q -t ed25519 -N '' -C reroot-testbed -f "$dir/id_ed25519" ||
            fail "ssh-keygen could not make $dir/id_ed25519"
        say "client key made"
    fi
    chmod 600 "$dir/id_ed25519"
    # Written again when they differ (a new client or host key), so a stale file never stays.
    # write_if_changed FILE DESCRIPTION: stdin into FILE (0600) unless it holds that already.
    write_if_changed() {
        local new
        new=$(cat)
        if [ -f "$1" ] && [ "$(cat "$1")" = "$new" ]; then
            say "$2 up to date"
        else
            printf '%s\n' "$new" >"$1.new"
            chmod 600 "$1.new"
            mv "$1.new" "$1"
            say "$2 written"
        fi
    }
    write_if_changed "$dir/authorized_keys" "authorized_keys (root, this sshd only)" <"$dir/id_ed25519.pub"
    # known_hosts from the host keys themselves, not from a scan of the port: the client then
    # trusts the files on this disk, never whatever answers there.
    for k in /etc/ssh/ssh_host_*_key.pub; do
        read -r line <"$k"
        printf '[%s]:%s %s\n' "$SSH_ADDR" "$SSH_PORT" "$(echo "$line" | cut -d' ' -f1,2)"
    done | write_if_changed "$dir/known_hosts" "known_hosts for [$SSH_ADDR]:$SSH_PORT"
    # UsePAM no: Debian's PAM stack for sshd (pam_loginuid) fails in a container without the
    # audit capability, and keys need none of it. Without PAM sshd refuses an account whose
    # password field starts with "!" (locked); Debian's root has "*" or a password.
    {
        # The address and port are on sshd's command line (-p, -o ListenAddress), once.
        echo "# Written by scripts/testbed.sh: the testbed's sshd ($SSH_ADDR:$SSH_PORT only)."
        for k in /etc/ssh/ssh_host_*_key; do echo "HostKey $k"; done
        echo "PidFile /run/reroot-testbed-sshd.pid"
        echo "AuthorizedKeysFile $dir/authorized_keys"
        echo "PermitRootLogin prohibit-password"
        echo "PubkeyAuthentication yes"
        echo "PasswordAuthentication no"
        echo "KbdInteractiveAuthentication no"
        echo "UsePAM no"
        echo "X11Forwarding no"
        echo "AllowTcpForwarding no"
    } | write_if_changed "$dir/sshd_config" "sshd_config"
    # sshd's privilege separation directory; /run is a tmpfs, emptied at each boot.
    mkdir -p /run/sshd
    chmod 755 /run/sshd
    local sshd=(/usr/sbin/sshd -f "$dir/sshd_config" -p "$SSH_PORT" -o "ListenAddress=$SSH_ADDR")
    local checked
    checked=$("${sshd[@]}" -t 2>&1) ||
        fail "sshd -t -f $dir/sshd_config refuses the configuration: $checked"
    if ssh_answers; then
        # It reads authorized_keys at each login, so a new key needs no restart.
        say "sshd already answering on $SSH_ADDR:$SSH_PORT"
    else
        say "starting sshd (log: $SSH_LOG)"
        # -D: in the foreground, so that detach keeps it in a session of its own; -e: its log
        # to stderr, which detach sends to the log file (there may be no syslog).
        detach "$SSH_LOG" "${sshd[@]}" -D -e
        within 10 ssh_answers || fail "sshd does not answer on $SSH_ADDR:$SSH_PORT after 10 s (see $SSH_LOG)"
        say "ready"
    fi
    # The check that matters: a login as the tests make it, with nothing asked.
    local out
    out=$(timeout 30 ssh "${SSH_CLIENT_OPTIONS[@]}" "root@$SSH_ADDR" true 2>&1) ||
        fail "ssh root@$SSH_ADDR -p $SSH_PORT with $dir/id_ed25519 does not log in: ${out:-no message} (see $SSH_LOG)"
    say "ssh -o BatchMode=yes -o Port=$SSH_PORT -o IdentityFile=$dir/id_ed25519 -o UserKnownHostsFile=$dir/known_hosts root@$SSH_ADDR true: ok"
}
setup_ssh
# END ssh

step "done"
say "LXD $(lxc query /1.0 | grep -o '"server_version": "[^"]*"' | head -1 | cut -d'"' -f4), socket /var/lib/lxd/unix.socket, storage pool $LXD_POOL"
say "ZFS pool $ZFS_POOL mounted at /$ZFS_POOL; btrfs at $BTRFS_MOUNT"
say "Incus $(incus query /1.0 | grep -o '"server_version": "[^"]*"' | head -1 | cut -d'"' -f4), socket /var/lib/incus/unix.socket, storage pool $LXD_POOL"
say "images (both daemons): reroot-old, reroot-new"
say "sshd on $SSH_ADDR:$SSH_PORT (root; key $SSH_DIR/id_ed25519, known hosts $SSH_DIR/known_hosts)"
