"""The configuration and scripts of the tiny image, as text (see docs/design/platform-images.md).

Boot flow: busybox ``init`` reads ``/etc/inittab``; ``rcS`` mounts the virtual filesystems,
brings up ``eth0`` by DHCP, reads the SSH key from the instance metadata service and creates
host keys; then ``dropbear`` and ``acpid`` run supervised, and ``rc.ready`` waits until port 22
listens, prints ``goldsmith-tiny: ssh ready`` and the host key fingerprints, and runs the user
data once per instance. ``poweroff`` (or the ACPI power button, via ``acpid``) runs ``rcK``.
"""

from __future__ import annotations

DEFAULT_USER = "ec2-user"
MARKER = "goldsmith-tiny:"
READY = "goldsmith-tiny: ssh ready"
FINISHED = "goldsmith-tiny: boot finished"

INITTAB = """\
# busybox init: one-time setup, supervised daemons, then the late first-boot tasks.
::sysinit:/etc/init.d/rcS
::respawn:/etc/init.d/dropbear
::respawn:/sbin/acpid -f -l /var/log/acpid.log
::once:/etc/init.d/rc.ready
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
::restart:/sbin/init
"""

IMDS_SH = r"""# Instance metadata client for busybox sh; source it. IMDS=host[:port] overrides
# the address.
# IMDSv2 first: busybox wget cannot send PUT, so the token request is written by hand to nc;
# when no token is offered (IMDSv1 only), requests go without one.
IMDS="${IMDS:-169.254.169.254}"
IMDS_TOKEN=""

imds_token() {
    _host="${IMDS%:*}"
    _port=80
    case "$IMDS" in *:*) _port="${IMDS##*:}" ;; esac
    _req="PUT /latest/api/token HTTP/1.0\r\nHost: $_host\r\n"
    _req="${_req}X-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: 0\r\n\r\n"
    _resp="$(printf "$_req" | nc -w 2 "$_host" "$_port" 2>/dev/null | tr -d '\r')"
    case "$_resp" in "HTTP/1."?" 200"*) ;; *) IMDS_TOKEN=""; return 1 ;; esac
    IMDS_TOKEN="$(printf '%s\n' "$_resp" | sed '1,/^$/d')"
    [ -n "$IMDS_TOKEN" ]
}

# imds_get PATH [TRIES]: print http://$IMDS/latest/PATH; fail on an error status.
# (Not wget -T: busybox 1.35's wget crashes with it; timeout(1) bounds the request instead.)
imds_get() {
    _tries="${2:-1}"
    while :; do
        if [ -n "$IMDS_TOKEN" ]; then
            timeout 5 wget -q -O - --header "X-aws-ec2-metadata-token: $IMDS_TOKEN" \
                "http://$IMDS/latest/$1" 2>/dev/null && return 0
        else
            timeout 5 wget -q -O - "http://$IMDS/latest/$1" 2>/dev/null && return 0
        fi
        _tries=$((_tries - 1))
        [ "$_tries" -gt 0 ] || return 1
        usleep 500000
    done
}

# imds_wait TRIES: wait until the service answers (taking a token when offered).
imds_wait() {
    _n="$1"
    while [ "$_n" -gt 0 ]; do
        imds_token || true
        imds_get meta-data/instance-id >/dev/null && return 0
        _n=$((_n - 1))
        usleep 500000
    done
    return 1
}
"""

RCS = r"""#!/bin/sh
# One-time system setup (busybox init "sysinit"): filesystems, network, metadata, keys.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
say() { echo "goldsmith-tiny: $*"; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
mount -o remount,rw / 2>/dev/null || say "warning: root file system is read-only"
mkdir -p /var/log /var/lib/goldsmith /etc/dropbear
hostname -F /etc/hostname
ip link set lo up
syslogd -O /var/log/messages

say "configuring eth0 by DHCP"
udhcpc -i eth0 -s /etc/udhcpc/default.script -t 10 -T 1 -A 5 -b -p /run/udhcpc.pid >/dev/null 2>&1 \
    || say "warning: no DHCP lease yet"

. /usr/lib/goldsmith/imds.sh
: > /run/instance-id
if imds_wait 20; then
    imds_get meta-data/instance-id > /run/instance-id
    name="$(imds_get meta-data/local-hostname 2>/dev/null)"
    [ -n "$name" ] && hostname "${name%%.*}"
    key="$(imds_get meta-data/public-keys/0/openssh-key 3)"
    if [ -n "$key" ]; then
        for home in /root /home/ec2-user; do
            mkdir -p "$home/.ssh"
            printf '%s\n' "$key" > "$home/.ssh/authorized_keys"
            chmod 700 "$home/.ssh"
            chmod 600 "$home/.ssh/authorized_keys"
        done
        chown -R ec2-user:ec2-user /home/ec2-user/.ssh
        say "installed the SSH public key for root and ec2-user"
    else
        say "no SSH public key in the instance metadata"
    fi
    if [ -n "$IMDS_TOKEN" ]; then
        say "instance metadata service: IMDSv2"
    else
        say "instance metadata service: IMDSv1"
    fi
else
    say "warning: instance metadata service unreachable"
fi

for type in ed25519 ecdsa; do
    file="/etc/dropbear/dropbear_${type}_host_key"
    [ -s "$file" ] || dropbearkey -t "$type" -f "$file" >/dev/null 2>&1
done
"""

RC_READY = r"""#!/bin/sh
# Late first-boot tasks (busybox init "once"): announce SSH, run the user data, grow the root.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
say() { echo "goldsmith-tiny: $*"; }

n=200
listening='^ *[0-9]*: [0-9A-F]*:0016 [0-9A-F]*:0000 0A'
while [ "$n" -gt 0 ] && ! grep -q "$listening" /proc/net/tcp /proc/net/tcp6 2>/dev/null; do
    usleep 50000
    n=$((n - 1))
done
echo "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
for type in ed25519 ecdsa; do
    file="/etc/dropbear/dropbear_${type}_host_key"
    fp="$(dropbearkey -y -f "$file" 2>/dev/null | sed -n 's/^Fingerprint: //p')"
    bits=256
    [ -n "$fp" ] && echo "$bits $fp root@$(hostname) ($(echo "$type" | tr a-z A-Z))"
done
echo "-----END SSH HOST KEY FINGERPRINTS-----"
echo "-----BEGIN SSH HOST KEY KEYS-----"
for type in ed25519 ecdsa; do
    dropbearkey -y -f "/etc/dropbear/dropbear_${type}_host_key" 2>/dev/null | grep '^ecdsa-\|^ssh-'
done
echo "-----END SSH HOST KEY KEYS-----"
address="$(ip -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}')"
say "ssh ready (eth0 ${address:-unconfigured})"

rootdev="$(awk '$2 == "/" {print $1}' /proc/mounts | tail -n 1)"
case "$rootdev" in /dev/*) resize2fs "$rootdev" >/dev/null 2>&1 ;; esac

iid="$(cat /run/instance-id 2>/dev/null)"
if [ -n "$iid" ]; then
    . /usr/lib/goldsmith/imds.sh
    imds_token || true
    dir="/var/lib/goldsmith/instances/$iid"
    mkdir -p "$dir"
    if [ ! -e "$dir/user-data.done" ] && imds_get user-data > "$dir/user-data" 2>/dev/null; then
        if [ "$(head -c 2 "$dir/user-data")" = "#!" ]; then
            chmod 700 "$dir/user-data"
            say "running user data"
            "$dir/user-data" > /var/log/user-data.log 2>&1
            say "user data exited with status $?"
        else
            say "user data is not a script (no #!): not run"
        fi
    fi
    touch "$dir/user-data.done"
fi
say "boot finished"
"""

DROPBEAR = r"""#!/bin/sh
# The SSH server, in the foreground so busybox init restarts it if it dies.
exec /usr/sbin/dropbear -F -p 22 \
    -r /etc/dropbear/dropbear_ed25519_host_key -r /etc/dropbear/dropbear_ecdsa_host_key
"""

RCK = r"""#!/bin/sh
# Shutdown (busybox init "shutdown"): stop daemons, flush, leave the root clean.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
echo "goldsmith-tiny: shutting down"
killall dropbear acpid udhcpc syslogd 2>/dev/null
usleep 200000
sync
mount -o remount,ro / 2>/dev/null
sync
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
# udhcpc event script: configure the interface, default route and resolv.conf from the lease.
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ip link set "$interface" up
        ;;
    bound|renew)
        if ! ip -4 addr show dev "$interface" | grep -q "inet $ip/"; then
            ip -4 addr flush dev "$interface"
            ip addr add "$ip/${mask:-24}" broadcast "${broadcast:-+}" dev "$interface"
        fi
        for gw in $router; do
            ip route replace default via "$gw" dev "$interface"
            break
        done
        {
            [ -n "$domain" ] && echo "search $domain"
            for server in $dns; do echo "nameserver $server"; done
        } > /etc/resolv.conf.new
        mv /etc/resolv.conf.new /etc/resolv.conf
        ;;
esac
exit 0
"""

ACPI_POWER = "#!/bin/sh\n# ACPI power button (QMP system_powerdown): a clean poweroff.\npoweroff\n"

PROFILE = """\
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PS1='\\u@\\h:\\w\\$ '
"""

OS_RELEASE = """\
PRETTY_NAME="Goldsmith tiny (busybox)"
NAME="Goldsmith tiny"
ID=goldsmith-tiny
ID_LIKE=busybox
"""

STATIC = {
    "etc/inittab": (INITTAB, 0o644),
    "etc/init.d/rcS": (RCS, 0o755),
    "etc/init.d/rc.ready": (RC_READY, 0o755),
    "etc/init.d/rcK": (RCK, 0o755),
    "etc/init.d/dropbear": (DROPBEAR, 0o755),
    "etc/udhcpc/default.script": (UDHCPC_SCRIPT, 0o755),
    "etc/acpi/PWRF/00000080": (ACPI_POWER, 0o755),
    "usr/lib/goldsmith/imds.sh": (IMDS_SH, 0o644),
    "etc/passwd": (
        "root:x:0:0:root:/root:/bin/sh\n"
        "ec2-user:x:1000:1000:EC2 Default User:/home/ec2-user:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    ),
    # "*": no password login, but not "!" (dropbear refuses locked accounts even for keys).
    "etc/shadow": ("root:*:19000::::::\nec2-user:*:19000::::::\nnobody:*:19000::::::\n", 0o600),
    "etc/group": ("root:x:0:\ntty:x:5:\nwheel:x:10:ec2-user\nec2-user:x:1000:\n", 0o644),
    "etc/shells": ("/bin/sh\n/bin/ash\n", 0o644),
    "etc/hostname": ("tiny\n", 0o644),
    "etc/hosts": ("127.0.0.1\tlocalhost\n::1\tlocalhost\n", 0o644),
    "etc/resolv.conf": ("", 0o644),
    "etc/profile": (PROFILE, 0o644),
    "etc/os-release": (OS_RELEASE, 0o644),
    "etc/fstab": ("# The root is mounted by the initramfs; see /etc/init.d/rcS.\n", 0o644),
}
"""Path in the image → (content, mode) for every file that is not copied from a package."""
