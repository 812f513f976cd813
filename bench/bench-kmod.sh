#!/bin/bash
# vm-timeout: 3600
# Runs inside the VM (tools/bench --kmod): our ublk_drv.ko ($UBLK_DRIVER, from vm-run --driver)
# against the kernel's in-tree ublk_drv, in one boot. Each round runs both drivers, one after the
# other (the first alternates from round to round): stop ublkd (which removes its devices),
# rmmod ublk_drv, load the other, start ublkd, add the same devices (null, and loop over the same
# tmpfs file), run every fio configuration. Same ublkd binary and options on both: copy mode,
# no recovery. Prints one JSON line per fio run ("RESULT {...}") and, at the end, medians and
# ratios ours / in-tree.
# env: BENCH_* (bench/lib.sh)
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
. "$UBLKD_SRC/bench/lib.sh"

[ "$UBLK_DRIVER" != intree ] || fail "bench-kmod: needs our module: vm-run --driver PATH/ublk_drv.ko"
[ -f "$UBLK_DRIVER" ] || fail "bench-kmod: UBLK_DRIVER=$UBLK_DRIVER: no such file"
install_ublkd
defer "systemctl stop ublkd"
echo "kernel $(uname -r), $(nproc) vCPUs, runs=$RUNS runtime=${RUNTIME}s, our module: $UBLK_DRIVER"

# Device flags that decide how data moves, or what the hot path checks: zero copy, NEED_GET_DATA,
# USER_COPY, AUTO_BUF_REG, recovery. They must be the same on both drivers for a fair comparison.
DATA_FLAGS=$(( (1 << 0) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 7) | (1 << 9) | (1 << 11) ))
declare -A MODE=()      # device name -> data flags seen with the first driver

# use_driver intree|ours: nothing of the other driver left, this one loaded, ublkd running on it
use_driver() {
	systemctl stop ublkd
	wait_until 30 bash -c '! compgen -G "/dev/ublkb*" >/dev/null' \
		|| fail "ublk disks still there after stopping ublkd: $(ls /dev/ublkb*)"
	if [ -d /sys/module/ublk_drv ]; then
		wait_until 10 rmmod ublk_drv || fail "rmmod ublk_drv failed (refcnt $(cat /sys/module/ublk_drv/refcnt))"
	fi
	if [ "$1" = intree ]; then
		modprobe ublk_drv || fail "modprobe ublk_drv failed"
		! grep -q O /sys/module/ublk_drv/taint || fail "modprobe ublk_drv loaded an out-of-tree module"
	else
		insmod "$UBLK_DRIVER" || fail "insmod $UBLK_DRIVER failed"
		grep -q O /sys/module/ublk_drv/taint || fail "insmod: the loaded ublk_drv is not out of tree"
	fi
	wait_until 10 test -c /dev/ublk-control || fail "$1: no /dev/ublk-control"
	systemctl start ublkd || fail "systemctl start ublkd failed"
	echo "driver $1: taint '$(cat /sys/module/ublk_drv/taint)', features $(ublkctl features)"
}

# add_devices: the devices under test, into DEV[], with the same options on every driver
declare -A DEV=()
add_devices() {
	local q n flags
	DEV=()
	for q in $QUEUES; do
		has_target loop && DEV[loop$q]=$(ublkctl add loop $BENCH_IMG --queues "$q" --zero-copy off \
			--recovery none --name "loop$q")
		has_target null && DEV[null$q]=$(ublkctl add null --size 1G --queues "$q" --zero-copy off \
			--recovery none --name "null$q")
	done
	for n in "${!DEV[@]}"; do
		flags=$(ublkctl show "$n" | awk '$1 == "Flags" {print $2}')
		echo "  $n: ${DEV[$n]} flags $flags"
		[ -n "${MODE[$n]:-}" ] || MODE[$n]=$(( flags & DATA_FLAGS ))
		[ "${MODE[$n]}" = $(( flags & DATA_FLAGS )) ] \
			|| fail "$n: data mode flags $(( flags & DATA_FLAGS )) differ from the other driver's ${MODE[$n]}"
	done
	# what blk-mq made of each disk: any difference between the drivers shows in the summary
	for n in "${!DEV[@]}"; do
		{ (cd /sys/block/"${DEV[$n]#/dev/}"/queue && grep -H . -- * 2>/dev/null) || :; } \
			| sed "s|^|$n |" | sort > "qattr.$CUR_DRV.$n"
	done
	has_target loop && echo "  ublkd loop: O_DIRECT=$(( 8#$(fd_flags "$(ublkd_pid)" $BENCH_IMG) >> 14 & 1 ))"
	# The first IO after a driver swap and ublkd start is slow (cold caches, queue threads
	# just started): a second of unrecorded IO on every device first.
	for n in "${!DEV[@]}"; do
		RUNTIME=1 fio_iops "${DEV[$n]}" randread 32 1 >/dev/null
	done
	return 0
}

has_target loop && bench_img
for run in $(seq "$RUNS"); do
	order="intree ours"
	(( run % 2 )) || order="ours intree"
	for drv in $order; do
		CUR_DRV=$drv
		use_driver "$drv" >&2
		add_devices >&2
		side=ours
		[ "$drv" = intree ] && side=base
		for rw in $RWS; do
			for depth in $DEPTHS; do
				for q in $QUEUES; do
					for t in $TARGETS; do
						iops=$(fio_iops "${DEV[$t$q]}" "$rw" "$depth" "$q")
						result "$run" "$rw" "$depth" "$q" "$t" "$side" "$drv" "$iops"
					done
				done
			done
		done
	done
done | tee results.txt

for f in qattr.intree.*; do
	diff --unchanged-line-format= --old-line-format='queue attribute, in-tree: %L' \
		--new-line-format='queue attribute, ours:    %L' "$f" "qattr.ours.${f#qattr.intree.}" || :
done
bench_summary results.txt ours in-tree
