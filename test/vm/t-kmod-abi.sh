#!/bin/bash
# Our ublk driver answers every control command it accepts as 6.12's in-tree driver does:
# build/test/ublk-probe (test/vm/ublk-probe.c) sends each one as upstream servers do, with
# good and bad input, and prints one row per case (result, what came back). It runs against
# the in-tree ublk_drv of this kernel, then against ours, in this one boot; the two tables
# must be equal (the in-tree's is printed), but for GET_FEATURES' bits (see below). A user's
# cases run as uid 4201 (no account needed).
# Skips unless the run uses our module (vm-run --driver .../ublk_drv.ko) on 6.12.
# vm-timeout: 240
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"

[ "$UBLKD_VM_KERNEL" = 6.12 ] || skip "compares with 6.12's in-tree driver"
load_our_driver
probe=$UBLKD_BUILD/test/ublk-probe
[ -x "$probe" ] || fail "no $probe: build it (ninja -C $UBLKD_BUILD)"
# ublkd would adopt or clean up the probe's devices; its unit modprobes the in-tree driver
systemctl stop ublkd 2>/dev/null || true
# whatever happens, the next test finds our driver loaded again
defer load_ublk_driver
no_devices() { [ -z "$(ls /sys/class/ublk-char 2>/dev/null)" ]; }

# run_probe NAME: the probe against the driver loaded now, into probe-NAME.txt
run_probe() {
	no_devices || fail "$1: devices exist before the probe: $(ls /sys/class/ublk-char)"
	timeout 60 "$probe" 4201 > "probe-$1.txt" 2> "probe-$1.err" ||
		fail "$1: the probe failed or hung: $(tail -5 "probe-$1.err") $(tail -3 "probe-$1.txt")"
	udevadm settle --timeout=10 >/dev/null 2>&1 || true
	no_devices || fail "$1: the probe left devices: $(ls /sys/class/ublk-char)"
}

UBLK_DRIVER=intree load_ublk_driver
grep -q O /sys/module/ublk_drv/taint && fail "the in-tree ublk_drv did not load"
run_probe intree
load_ublk_driver
grep -q O /sys/module/ublk_drv/taint || fail "our ublk_drv did not load again"
run_probe ours

echo "in-tree ublk_drv $(modinfo -F vermagic ublk_drv | cut -d' ' -f1), $(wc -l < probe-intree.txt) cases:"
cat probe-intree.txt
# The one difference on purpose: GET_FEATURES. Ours has no zoned devices (UBLK_F_ZONED, 0x100,
# which the in-tree driver has with USER_COPY) and has 6.13's USER_RECOVERY_FAIL_IO (0x200).
features() { sed -n 's/^GET_FEATURES  *0  *features=\(0x[0-9a-f]*\)$/\1/p' "$1"; }
fi_=$(features probe-intree.txt) fo=$(features probe-ours.txt)
[ -n "$fi_" ] && [ -n "$fo" ] || fail "no GET_FEATURES row: '$fi_' '$fo'"
(( fo == ((fi_ & ~0x100) | 0x200) )) ||
	fail "GET_FEATURES: ours $fo, in-tree $fi_: not the in-tree's less ZONED (0x100) plus FAIL_IO (0x200)"
echo "GET_FEATURES: ours $fo = in-tree $fi_ less ZONED (0x100), plus USER_RECOVERY_FAIL_IO (0x200)"
sed -i '/^GET_FEATURES  *0 /d' probe-intree.txt probe-ours.txt
if ! diff -u probe-intree.txt probe-ours.txt > probe.diff; then
	echo "ours differs:"
	cat probe.diff
	fail "our driver's answers differ from the in-tree driver's in $(grep -c '^+[^+]' probe.diff) cases"
fi
echo "ours: the same $(wc -l < probe-ours.txt) other rows"
