#!/usr/bin/env bash
# Check a cross-built binary: it must be an aarch64 ELF, dynamically linked against glibc no
# newer than Debian bookworm's (2.36, what Raspberry Pi OS bookworm ships), and it must run
# `--version` under qemu-aarch64-static with the same answer as the native build.
set -euo pipefail
bin=${1:?usage: cross/check.sh BINARY}
want_version=${2:?usage: cross/check.sh BINARY VERSION}
fail() { echo "cross check FAILED: $*" >&2; exit 1; }

[ -x "$bin" ] || fail "$bin is missing or not executable"
header=$(readelf -h "$bin") || fail "readelf cannot read $bin"
grep -q 'Class:.*ELF64' <<<"$header" || fail "$bin is not a 64-bit ELF"
grep -q 'Machine:.*AArch64' <<<"$header" || fail "$bin is not an AArch64 binary: $(grep Machine <<<"$header")"
interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
[ "$interp" = /lib/ld-linux-aarch64.so.1 ] || fail "unexpected program interpreter '$interp'"
newest=$(readelf -V "$bin" | grep -o 'GLIBC_2\.[0-9]*' | sort -t. -k2 -n -u | tail -1)
[ "${newest#GLIBC_2.}" -le 36 ] || fail "$bin needs $newest, newer than bookworm's glibc 2.36"

got=$(qemu-aarch64-static -L /usr/aarch64-linux-gnu "$bin" --version) || fail "$bin --version failed under qemu-aarch64-static"
[ "$got" = "local-assistant $want_version" ] || fail "--version printed '$got', want 'local-assistant $want_version'"
echo "cross check OK: $bin is AArch64 (needs up to $newest) and prints '$got' under qemu"
