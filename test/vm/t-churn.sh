#!/bin/bash
# vm-timeout: 900
# Add and delete 1000 devices through the ublk driver directly (no ublkd; build/test/ublk-churn):
# each one started with a server, read, then stopped and deleted, every 10th with its server
# SIGKILLed instead. No cycle may hang; afterwards no device is left, the unreclaimable slab is
# back near its baseline (a leak of one small object per device would show), the module's
# reference count is back to its baseline, and the module unloads. Runs with either driver
# (vm-run --driver); vm-kmod-6.12 runs it with ours.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
CYCLES=${VMT_CHURN_CYCLES:-1000}
churn=$UBLKD_BUILD/test/ublk-churn
[ -x "$churn" ] || fail "no $churn: build it (ninja -C $UBLKD_BUILD)"

load_ublk_driver
# ublkd would adopt or clean up the devices under our feet.
systemctl stop ublkd 2>/dev/null || true
# whatever happens, the next test finds the driver loaded again
defer load_ublk_driver

# Unreclaimable slab in KiB, once reclaimable caches are dropped; the median of three reads.
slab_kb() {
	local i v=()
	for i in 1 2 3; do
		sync
		echo 3 > /proc/sys/vm/drop_caches
		v+=("$(awk '/^SUnreclaim:/ { print $2 }' /proc/meminfo)")
	done
	printf '%s\n' "${v[@]}" | sort -n | sed -n 2p
}
# Per-cache bytes, for the report if the slab grew: "name bytes".
slab_caches() { awk 'NR > 2 { print $1, $2 * $4 }' /proc/slabinfo | sort; }
no_devices() { [ -z "$(ls /sys/class/ublk-char)" ] && ! ls /sys/block | grep -q '^ublkb'; }

# A warm-up, so that caches that grow once (idr layers, kmalloc slabs) are there for the baseline.
"$churn" 20 10 > /dev/null || fail "warm-up churn failed"
no_devices || fail "devices left after the warm-up: $(ls /sys/class/ublk-char)"
udevadm settle --timeout=30 || true
refcnt0=$(cat /sys/module/ublk_drv/refcnt)
slab0=$(slab_kb)
slab_caches > slab0.txt

start=$(date +%s%N)
out=$(timeout $((600 * TIME_FACTOR)) "$churn" "$CYCLES" 10) || fail "ublk-churn $CYCLES failed or hung: $out"
echo "$out"
echo "time: $(( ($(date +%s%N) - start) / 1000000 )) ms for $CYCLES devices"
slowest=$(sed -n 's/.*slowest_ms=\([0-9]*\).*/\1/p' <<< "$out")
(( slowest <= 10000 * TIME_FACTOR )) || fail "one add/start/stop/delete cycle took $slowest ms (bound 10 s)"

no_devices || fail "devices left: $(ls /sys/class/ublk-char) $(ls /sys/block | grep ublkb)"
# udev works through several thousand events after the churn (slow under TCG); a worker stuck
# on one of our block devices would keep the queue from ever emptying.
t=$(date +%s)
udevadm settle --timeout=$((300 * TIME_FACTOR)) || fail "udev's queue still not empty $((300 * TIME_FACTOR)) s after the churn"
echo "udev settled $(( $(date +%s) - t )) s after the churn"
refcnt1=$(cat /sys/module/ublk_drv/refcnt)
slab1=$(slab_kb)
slab_caches > slab1.txt
echo "module refcount: $refcnt0 -> $refcnt1; unreclaimable slab: $slab0 -> $slab1 KiB" \
	"($(( (slab1 - slab0) * 1024 / CYCLES )) bytes per device)"
[ "$refcnt1" = "$refcnt0" ] || fail "module refcount $refcnt1, not the $refcnt0 of before"
# 1000 devices of the driver's own allocations (device, queue, descriptor page, tag set, disk)
# are several MiB: a leak of them all would be far beyond 1 MiB; slab noise of a quiet VM is not.
if (( slab1 - slab0 > 1024 )); then
	join slab0.txt slab1.txt | awk '{ d = $3 - $2; if (d > 0) print d, $1 }' | sort -rn | head -8
	fail "unreclaimable slab grew by $(( slab1 - slab0 )) KiB over $CYCLES devices"
fi

rmmod ublk_drv || fail "rmmod ublk_drv failed after the churn (refcount $(cat /sys/module/ublk_drv/refcnt))"
[ ! -d /sys/module/ublk_drv ] || fail "ublk_drv still loaded after rmmod"
echo "rmmod: ok"
