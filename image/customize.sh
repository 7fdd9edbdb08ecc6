#!/usr/bin/env bash
# mmdebstrap customize hook: turn the bootstrapped Debian arm64 tree ($2) into the appliance's
# root filesystem for profile $1. Runs on the build host; commands inside the tree run through
# qemu-user (binfmt_misc).
set -euo pipefail
profile=${1:?profile}
root=${2:?rootfs}
here=$(cd "$(dirname "$0")" && pwd)

echo local-assistant > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tlocal-assistant\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
# systemd generates a fresh machine id on first boot.
: > "$root/etc/machine-id"

# Filesystems: the data partition holds all state and is grown at first boot.
mkdir -p "$root/var/lib/local-assistant"
if [ "$profile" = jetson ]; then
    # NVIDIA's flash layout names the root partition itself (APP); L4T mounts it as /dev/root.
    # Without an la-data partition in the flash layout, state stays on the root filesystem.
    echo '/dev/root      /                        ext4  defaults,noatime,errors=remount-ro  0 1' > "$root/etc/fstab"
else
    echo 'LABEL=la-root  /                        ext4  defaults,noatime,errors=remount-ro  0 1' > "$root/etc/fstab"
fi
echo 'LABEL=la-data  /var/lib/local-assistant ext4  defaults,noatime,nofail            0 2' >> "$root/etc/fstab"
if [ "$profile" = qemu-arm64 ]; then
    echo 'LABEL=LA-EFI   /boot/efi                vfat  umask=0077,nofail                 0 2' >> "$root/etc/fstab"
    mkdir -p "$root/boot/efi"
elif [ "$profile" = rpi5 ]; then
    echo 'LABEL=LA-BOOT  /boot/firmware           vfat  umask=0077,nofail                 0 2' >> "$root/etc/fstab"
    mkdir -p "$root/boot/firmware"
fi

# Network: DHCP on any wired interface, time from NTP.
mkdir -p "$root/etc/systemd/network"
cat > "$root/etc/systemd/network/20-wired.network" <<'NET'
[Match]
Name=en* eth*

[Network]
DHCP=yes
NET
chroot "$root" systemctl enable systemd-networkd.service systemd-timesyncd.service

# The appliance serves its LAN: listen on every interface (the file is the .deb's conffile).
sed -i 's/^listen = "127.0.0.1:8080"/listen = "0.0.0.0:8080"/' "$root/etc/local-assistant/config.toml"
grep -q '^listen = "0.0.0.0:8080"' "$root/etc/local-assistant/config.toml"

# First boot: grow the data partition, generate secrets, print the admin setup code.
install -Dm0755 "$here/firstboot/firstboot" "$root/usr/lib/local-assistant/firstboot"
install -Dm0644 "$here/firstboot/local-assistant-firstboot.service" \
    "$root/lib/systemd/system/local-assistant-firstboot.service"
chroot "$root" systemctl enable local-assistant-firstboot.service

# The package enabled the daemon; make sure.
test -L "$root/etc/systemd/system/multi-user.target.wants/local-assistant.service"

# Keep the image small: no apt lists or caches.
rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin
