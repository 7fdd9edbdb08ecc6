#!/usr/bin/env bash
# Build the local-assistant .deb from a compiled binary:
#   image/deb/build.sh ARCH BINARY OUTDIR     (ARCH: arm64 or amd64)
# DEB_COMPRESSION=none|gzip|xz (default xz) chooses the compression (tests use none).
# Models are not inside the package: `local-assistant models pull` fetches them (the image
# build pre-fetches them into the state directory).
set -euo pipefail
arch=${1:?usage: build.sh ARCH BINARY OUTDIR}
bin=${2:?usage: build.sh ARCH BINARY OUTDIR}
out=${3:?usage: build.sh ARCH BINARY OUTDIR}
top=$(cd "$(dirname "$0")/../.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -1)
case "$arch" in arm64|amd64) ;; *) echo "build.sh: ARCH must be arm64 or amd64, got '$arch'" >&2; exit 2 ;; esac
[ -x "$bin" ] || { echo "build.sh: $bin is not an executable" >&2; exit 2; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
install -Dm0755 "$bin" "$stage/usr/bin/local-assistant"
install -Dm0644 "$top/config.example.toml" "$stage/etc/local-assistant/config.toml"
install -Dm0644 "$top/systemd/local-assistant.service" "$stage/lib/systemd/system/local-assistant.service"
install -Dm0644 "$top/systemd/system.conf.d/local-assistant-watchdog.conf" \
    "$stage/usr/lib/systemd/system.conf.d/local-assistant-watchdog.conf"
install -Dm0644 "$top/udev/60-local-assistant.rules" "$stage/lib/udev/rules.d/60-local-assistant.rules"
install -Dm0644 "$top/image/deb/sysusers.conf" "$stage/usr/lib/sysusers.d/local-assistant.conf"
install -Dm0644 "$top/README.md" "$stage/usr/share/doc/local-assistant/README.md"
install -Dm0644 "$top/docs/ARCHITECTURE.md" "$stage/usr/share/doc/local-assistant/ARCHITECTURE.md"
install -d "$stage/DEBIAN"
for script in postinst prerm postrm; do
    install -m0755 "$top/image/deb/$script" "$stage/DEBIAN/$script"
done
echo /etc/local-assistant/config.toml > "$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: local-assistant
Version: $version
Architecture: $arch
Maintainer: local-assistant developers <dev@local-assistant.invalid>
Installed-Size: $size
Depends: libc6 (>= 2.34), systemd (>= 247), libespeak-ng1, libasound2
Section: misc
Priority: optional
Homepage: https://local-assistant.invalid
Description: offline-first home assistant appliance daemon
 Voice (wake word, button), phone (GSM modem, SIP, Twilio), SMS and a local
 API in one daemon that keeps a household's calendar, tasks and reminders and
 answers with local models. Nothing leaves the box unless the owner consents.
CONTROL
mkdir -p "$out"
deb="$out/local-assistant_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$stage" "$deb" >/dev/null
echo "$deb"
