"""Configuration written into the Debian 12 image (see docs/design/platform-images.md).

Instead of cloud-init (Python; four boot stages that take tens of seconds under software
emulation) the image runs ``goldsmith-init``, a shell script in two systemd units that does
what cloud-init's EC2 datasource does for a first boot: host keys, the key pair from the
instance metadata service (IMDSv2 with a v1 fallback, via curl), the hostname, and the user
data once per instance. It prints cloud-init-style host key fingerprints on the console.
"""

from __future__ import annotations

DEFAULT_USER = "admin"
READY = "goldsmith-init: ssh keys installed"
FINISHED = "goldsmith-init: boot finished"

GOLDSMITH_INIT = r"""#!/bin/bash
# goldsmith-init keys|final: first-boot tasks from the EC2 instance metadata service.
#   keys  (before ssh.service): host keys, hostname, the key pair for the default user
#   final (after ssh.service):  the user data, once per instance; fingerprints on the console
set -u
IMDS="${IMDS:-169.254.169.254}"
USER_NAME=admin
STATE=/var/lib/goldsmith
say() { echo "goldsmith-init: $*" > /dev/console; echo "goldsmith-init: $*"; }

token() {
    curl -fsS -m 2 -X PUT "http://$IMDS/latest/api/token" \
        -H "X-aws-ec2-metadata-token-ttl-seconds: 21600" 2>/dev/null
}

get() {  # get PATH: IMDSv2 if a token is offered, else IMDSv1
    if [ -n "$TOKEN" ]; then
        curl -fsS -m 5 -H "X-aws-ec2-metadata-token: $TOKEN" "http://$IMDS/latest/$1"
    else
        curl -fsS -m 5 "http://$IMDS/latest/$1"
    fi
}

connect() {  # wait (up to ~60 s) until the metadata service answers
    for _ in $(seq 120); do
        TOKEN="$(token || true)"
        get meta-data/instance-id > /run/goldsmith-instance-id 2>/dev/null && return 0
        sleep 0.5
    done
    return 1
}

keys() {
    # ed25519 and ECDSA only: RSA key generation takes ~10 s under software emulation.
    for type in ed25519 ecdsa; do
        file="/etc/ssh/ssh_host_${type}_key"
        [ -s "$file" ] || ssh-keygen -q -t "$type" -N "" -C "root@$(hostname)" -f "$file"
    done
    mkdir -p "$STATE"
    if ! connect; then
        say "warning: instance metadata service unreachable"
        return 0
    fi
    if [ -n "$TOKEN" ]; then
        say "instance metadata service: IMDSv2"
    else
        say "instance metadata service: IMDSv1"
    fi
    name="$(get meta-data/local-hostname 2>/dev/null || true)"
    if [ -n "$name" ]; then
        echo "${name%%.*}" > /etc/hostname
        hostname "${name%%.*}"
    fi
    key="$(get meta-data/public-keys/0/openssh-key 2>/dev/null || true)"
    if [ -n "$key" ]; then
        home="$(getent passwd "$USER_NAME" | cut -d: -f6)"
        install -d -m 700 -o "$USER_NAME" -g "$USER_NAME" "$home/.ssh"
        printf '%s\n' "$key" > "$home/.ssh/authorized_keys"
        chown "$USER_NAME:$USER_NAME" "$home/.ssh/authorized_keys"
        chmod 600 "$home/.ssh/authorized_keys"
        say "ssh keys installed for $USER_NAME"
    else
        say "no SSH public key in the instance metadata"
    fi
}

final() {
    {
        echo "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
        for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -l -f "$f"; done
        echo "-----END SSH HOST KEY FINGERPRINTS-----"
        echo "-----BEGIN SSH HOST KEY KEYS-----"
        cat /etc/ssh/ssh_host_*_key.pub | cut -d' ' -f1-2
        echo "-----END SSH HOST KEY KEYS-----"
    } > /dev/console
    iid="$(cat /run/goldsmith-instance-id 2>/dev/null || true)"
    if [ -n "$iid" ]; then
        TOKEN="$(token || true)"
        dir="$STATE/instances/$iid"
        mkdir -p "$dir"
        if [ ! -e "$dir/user-data.done" ] && get user-data > "$dir/user-data" 2>/dev/null; then
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
}

TOKEN=""
case "${1:-}" in
    keys) keys ;;
    final) final ;;
    *) echo "usage: goldsmith-init keys|final" >&2; exit 2 ;;
esac
"""

KEYS_UNIT = """\
[Unit]
Description=Goldsmith first boot: host keys and key pair from the instance metadata
After=systemd-networkd.service systemd-resolved.service
Wants=systemd-networkd.service
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/goldsmith-init keys
RemainAfterExit=yes
TimeoutStartSec=120

[Install]
WantedBy=multi-user.target
"""

FINAL_UNIT = """\
[Unit]
Description=Goldsmith first boot: user data
After=ssh.service goldsmith-keys.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/goldsmith-init final
RemainAfterExit=yes
TimeoutStartSec=0

[Install]
WantedBy=multi-user.target
"""

NETWORK = """\
# DHCP on the first (any) Ethernet interface, as on EC2.
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
UseHostname=no
"""

SUDOERS = "admin ALL=(ALL) NOPASSWD:ALL\n"

SSHD_CONFIG = """\
# Host keys made at first boot by goldsmith-init (no RSA: too slow to generate under TCG).
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
PasswordAuthentication no
"""

GRUB_CFG = """\
set timeout=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
search --no-floppy --fs-uuid --set=root {root_uuid}
linux /vmlinuz root=UUID={root_uuid} ro {cmdline}
initrd /initrd.img
boot
"""

CMDLINE = "console=tty0 console=ttyS0,115200 quiet systemd.show_status=1 net.ifnames=0"


def fstab(root_uuid: str, esp_uuid: str) -> str:
    """/etc/fstab for the root and the EFI System Partition."""
    return (
        f"UUID={root_uuid} / ext4 errors=remount-ro 0 1\n"
        f"UUID={esp_uuid} /boot/efi vfat umask=0077,nofail 0 0\n"
    )
