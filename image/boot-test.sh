#!/usr/bin/env bash
# Boot the qemu-arm64 image under qemu-system-aarch64 (TCG, UEFI firmware) and check it works:
#   image/boot-test.sh [IMAGE.img.xz]
# Waits (bounded) for /readyz through a port forward, then checks on the console (the journal
# is forwarded to it) that first boot ran, the daemon reached READY=1 under systemd with its
# watchdog, the LLM and the memory model loaded from the image's models, and the hardware
# watchdog is armed; then powers the machine off via ACPI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
xzimg=${1:-$here/out/qemu-arm64.img.xz}
work=$here/work/boot-test
timeout_s=${BOOT_TIMEOUT:-1200}
# The reason goes after the console's tail as well: CI may keep only the end of the output.
fail() {
    echo "boot test FAILED: $*" >&2
    [ -f "$work/console.log" ] && tail -40 "$work/console.log" >&2
    echo "boot test FAILED: $*" >&2
    exit 1
}

rm -rf "$work"; mkdir -p "$work"
(cd "$(dirname "$xzimg")" && sha256sum -c --quiet "$(basename "$xzimg").sha256") || fail "checksum mismatch for $xzimg"
# Sparse: the image is mostly empty space.
xz -dc "$xzimg" | dd of="$work/disk.img" bs=1M iflag=fullblock conv=sparse status=none
"$here/inspect.sh" "$work/disk.img" qemu-arm64
# A bigger "card" than the image: first boot must grow the data partition into it.
truncate -s +1G "$work/disk.img"
cp /usr/share/AAVMF/AAVMF_VARS.fd "$work/vars.fd"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# The Pi 5's own core, which the binary is built for (make cross: target-cpu=cortex-a76): an
# instruction beyond it fails here as it would on the device. It also boots faster than `max`,
# whose pointer authentication (ARMv8.3) is slow to emulate.
start=$(date +%s)
qemu-system-aarch64 -M virt -cpu cortex-a76 -smp 2 -m 1536 -display none \
    -drive if=pflash,format=raw,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd \
    -drive if=pflash,format=raw,file="$work/vars.fd" \
    -drive if=virtio,format=raw,file="$work/disk.img" \
    -netdev user,id=n0,hostfwd=tcp:127.0.0.1:$port-:8080 -device virtio-net-pci,netdev=n0,romfile= \
    -device i6300esb \
    -serial file:"$work/console.log" \
    -monitor unix:"$work/monitor.sock",server,nowait &
qemu=$!
trap 'kill $qemu 2>/dev/null || true' EXIT

ready=""
while [ $(( $(date +%s) - start )) -lt "$timeout_s" ]; do
    kill -0 $qemu 2>/dev/null || fail "qemu exited"
    if body=$(curl -fsS --max-time 5 "http://127.0.0.1:$port/readyz" 2>/dev/null); then ready=$body; break; fi
    sleep 5
done
[ -n "$ready" ] || fail "no /readyz within ${timeout_s}s"
booted=$(( $(date +%s) - start ))
echo "boot test: /readyz answered after ${booted}s: $ready"
grep -q '"ready":true' <<<"$ready" || fail "/readyz is not ready: $ready"
# The models pre-fetched into the image load on the device: the LLM (candle) and the memory
# embeddings (the arm64 ONNX Runtime library). Without them both report "degraded".
for c in llm memory; do
    state=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["components"].get(sys.argv[2], {}).get("state", "absent"))' "$ready" "$c")
    [ "$state" = ready ] || fail "component $c is $state on the image: $ready"
done

sleep 5
log=$work/console.log
grep -q 'Started local-assistant.service' "$log" || fail "systemd did not report the unit started (READY=1)"
grep -q 'local-assistant ready' "$log" || fail "the daemon's READY log line is missing"
grep -q 'systemd watchdog enabled' "$log" || fail "the daemon did not see WATCHDOG_USEC (service watchdog not armed)"
grep -Eq 'Using hardware watchdog|Watchdog running with a timeout' "$log" || fail "the hardware watchdog is not armed"
grep -q 'one-time admin setup code: [0-9]\{4\}-[0-9]\{4\}' "$log" || fail "first boot did not print the admin setup code"
grep -q 'local-assistant-firstboot: data partition' "$log" || fail "first boot did not grow the data partition"

# Power off through ACPI (the power button), and wait for qemu to exit. The monitor client waits
# for QEMU's greeting before it sends and for the prompt after: a client that closed at once
# could lose the command when QEMU's greeting met a closed socket. Should the guest still not
# react (no "Power key pressed" within 30 s), the button is pressed again, twice at most.
press_power_button() {
    python3 - "$work/monitor.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
def until_prompt():
    got = b""
    while not got.endswith(b"(qemu) "):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("the QEMU monitor closed the connection")
        got += chunk
until_prompt()
s.sendall(b"system_powerdown\n")
until_prompt()
s.close()
PY
}
echo "boot test: checks passed after $(( $(date +%s) - start ))s; pressing the power button"
for press in 1 2 3; do
    press_power_button || fail "could not send system_powerdown to the QEMU monitor"
    for _ in $(seq 1 15); do grep -q 'Power key pressed' "$log" && break 2; sleep 2; done
    echo "boot test: press $press of the power button not seen by the guest after 30s"
done
grep -q 'Power key pressed' "$log" || fail "the guest did not react to the power button (3 presses)"
for _ in $(seq 1 60); do kill -0 $qemu 2>/dev/null || break; sleep 2; done
if kill -0 $qemu 2>/dev/null; then fail "the guest did not power off within 120s"; fi
trap - EXIT
grep -q 'reboot: Power down' "$log" || fail "the guest did not shut down cleanly"
echo "boot test OK: ready after ${booted}s, clean power-off after $(( $(date +%s) - start ))s in total"
