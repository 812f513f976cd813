#!/bin/bash
# vm-timeout: 3000
# Runs inside the VM (tools/bench): ublkd's loop and null targets against the kernel's own loop
# driver and null_blk, in one boot, interleaved round by round, on the same backing file; with
# BENCH_TARGETS=nbd, ublkd's nbd target against the kernel's nbd driver (nbd-client), one
# nbdkit memory export for both, and the attach latency of each (ATTACH lines).
# Prints one JSON line per fio run ("RESULT {...}") and, at the end, medians and ratios.
# First, the control path: how long ublkctl's Add+Start and Del of a null device take, as a
# user sees them (BENCH_CTL_DEVICES of each, median and max; report only: the aim, a median
# Add+Start under 600 ms and none over 2.5 s under TCG, was t-scale's until a loaded host
# failed it there).
# env: BENCH_* (bench/lib.sh)
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
. "$UBLKD_SRC/bench/lib.sh"

start_ublkd
echo "kernel $(uname -r), $(nproc) vCPUs, ublk features $(ublkctl features), runs=$RUNS runtime=${RUNTIME}s batch=$BATCH"

if [ "$CTL_DEVICES" -gt 0 ]; then
	ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
	stats() { sort -n | awk '{ a[NR] = $1 } END { printf "median %d ms, max %d ms", a[int((NR + 1) / 2)], a[NR] }'; }
	: > ctl-add.ms
	: > ctl-del.ms
	for i in $(seq "$CTL_DEVICES"); do
		t=$(date +%s%N)
		ublkctl add null --size 16M --name "ctl$i" > /dev/null
		ms_since "$t" >> ctl-add.ms
	done
	for i in $(seq "$CTL_DEVICES"); do
		t=$(date +%s%N)
		ublkctl del "ctl$i"
		ms_since "$t" >> ctl-del.ms
	done
	echo "control path, $CTL_DEVICES null devices: add+start $(stats < ctl-add.ms), del $(stats < ctl-del.ms)"
fi

# Devices under test: NAME=/dev/X, kernel's and ours, created once for the whole run.
declare -A DEV=()
if has_target loop; then
	bench_img
	DEV[kloop]=$(losetup --direct-io=on --show -f $BENCH_IMG)
	echo "kernel loop: ${DEV[kloop]} dio=$(cat /sys/block/${DEV[kloop]#/dev/}/loop/dio)"
	# With auto buffer registration (7.x), uloop is zero-copy and ucloop the copy mode beside it;
	# with our own driver (tools/bench --driver), uloop is in splice mode (zero-copy=on).
	zc=0 zc_opt=()
	if (( $(ublkctl features) & (1 << 11) )); then
		zc=1
	elif driver_splice; then
		zc=1 zc_opt=(--zero-copy on)
	fi
	for q in $QUEUES; do
		DEV[uloop$q]=$(ublkctl add loop $BENCH_IMG --queues "$q" "${zc_opt[@]}" --name "uloop$q")
		[ $zc = 1 ] && DEV[ucloop$q]=$(ublkctl add loop $BENCH_IMG --queues "$q" --zero-copy off --name "ucloop$q")
		if [ "$PIN" = 1 ]; then
			pin_queue_threads "${DEV[uloop$q]}" "$q"
			[ $zc = 0 ] || pin_queue_threads "${DEV[ucloop$q]}" "$q"
		fi
	done
	echo "ublkd loop: O_DIRECT=$(( 8#$(fd_flags "$(ublkd_pid)" $BENCH_IMG) >> 14 & 1 ))"
fi
if has_target null; then
	modprobe null_blk nr_devices=0
	mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
	for q in $QUEUES; do
		d=/sys/kernel/config/nullb/nullb$q
		mkdir "$d"
		echo 1024 > "$d/size"; echo 512 > "$d/blocksize"; echo "$q" > "$d/submit_queues"
		echo 128 > "$d/hw_queue_depth"; echo 0 > "$d/irqmode"; echo 0 > "$d/completion_nsec"
		echo 1 > "$d/power"
		DEV[knull$q]=/dev/nullb$q
		DEV[unull$q]=$(ublkctl add null --size 1G --queues "$q" --name "unull$q")
		[ "$PIN" = 1 ] && pin_queue_threads "${DEV[unull$q]}" "$q"
	done
fi
if has_target nbd; then
	# One nbdkit (memory plugin, multi-conn) for both: the kernel's nbd driver with nbd-client,
	# one connection, against ublkd's nbd target, one connection a queue.
	modprobe nbd nbds_max=4 || fail "modprobe nbd failed"
	nbdkit -U /run/bench-nbd.sock -P /run/bench-nbd.pid memory 1G || fail "nbdkit did not start"
	defer "kill \$(cat /run/bench-nbd.pid)"
	wait_until 10 test -S /run/bench-nbd.sock || fail "no nbdkit socket"
	nbd_uri="nbd+unix:///?socket=/run/bench-nbd.sock"
	knbd_up() { [ "$(blockdev --getsize64 /dev/nbd1 2>/dev/null || echo 0)" -gt 0 ]; }
	# Attach latency: command to a usable block device (its size readable), 5 times each.
	for i in 1 2 3 4 5; do
		t0=$(date +%s%N)
		d=$(ublkctl add nbd "$nbd_uri" --name lat)
		blockdev --getsize64 "$d" >/dev/null || fail "$d not usable"
		t1=$(date +%s%N)
		ublkctl del lat
		t2=$(date +%s%N)
		nbd-client -unix /run/bench-nbd.sock /dev/nbd1 >/dev/null 2>&1 || fail "nbd-client failed"
		wait_until 10 knbd_up || fail "/dev/nbd1 not usable"
		t3=$(date +%s%N)
		nbd-client -d /dev/nbd1 >/dev/null 2>&1
		echo "ATTACH {\"round\":$i,\"ublkd_ms\":$(( (t1 - t0) / 1000000 )),\"nbd_client_ms\":$(( (t3 - t2) / 1000000 ))}"
	done
	nbd-client -unix /run/bench-nbd.sock /dev/nbd0 >/dev/null 2>&1 || fail "nbd-client failed"
	defer "nbd-client -d /dev/nbd0 >/dev/null 2>&1"
	DEV[knbd]=/dev/nbd0
	for q in $QUEUES; do
		DEV[unbd$q]=$(ublkctl add nbd "$nbd_uri" --queues "$q" --name "unbd$q")
		[ "$PIN" = 1 ] && pin_queue_threads "${DEV[unbd$q]}" "$q"
	done
fi
ublkctl list

# pairs: "target:ours:theirs:jobs" compared on equal footing (same jobs and depth)
pairs=()
for q in $QUEUES; do
	has_target loop && pairs+=("loop:uloop$q:kloop:$q")
	has_target loop && [ "${zc:-0}" = 1 ] && pairs+=("loop-copy:ucloop$q:kloop:$q")
	has_target null && pairs+=("null:unull$q:knull$q:$q")
	# the kernel's side has one connection: a fair pair with one queue only
	has_target nbd && [ "$q" = 1 ] && pairs+=("nbd:unbd$q:knbd:$q")
done

run_pairs | tee results.txt

bench_summary results.txt ublkd kernel
