#!/bin/bash
# vm-timeout: 3000
# Runs inside the VM (tools/bench): ublkd's loop and null targets against the kernel's own loop
# driver and null_blk, in one boot, interleaved round by round, on the same backing file; with
# BENCH_TARGETS=nbd, ublkd's nbd target against the kernel's nbd driver (nbd-client), as many
# connections on each side, each server of BENCH_NBD_SERVERS (nbdkit memory, qemu-nbd on a raw
# file) serving both, and the attach latency of each (ATTACH lines, with bench/attach.py's
# stages).
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
	# Servers (BENCH_NBD_SERVERS), each serving both sides, started once:
	#   nbdkit:   the memory plugin, 1 GiB (it advertises multi-conn; thread model parallel)
	#   qemu-nbd: a raw file, $BENCH_IMG (bench_img: 1 GiB on tmpfs, or brd): -f raw (no format
	#             probing), --cache=none --aio=threads (O_DIRECT, as a disk image is served, IO in
	#             qemu's thread pool: its default AIO mode), --shared=16 (all the connections of
	#             both sides at once; and qemu-nbd advertises multi-conn only when it allows more
	#             than one client: with the default --shared=1 ublkd would take 1 queue), -t (it
	#             stays when the last client goes, between attach rounds)
	# The kernel's side: nbd-client -unix SOCK /dev/nbdN -C Q (netlink, the default here: more
	# than one connection needs it); ours: ublkctl add nbd URI --queues Q (one connection a queue).
	modprobe nbd nbds_max=16 || fail "modprobe nbd failed"
	declare -A NBD_SOCK=()
	for srv in $NBD_SERVERS; do
		sock=/run/bench-$srv.sock
		case $srv in
		nbdkit)
			nbdkit -U "$sock" -P /run/bench-nbdkit.pid memory 1G || fail "nbdkit did not start"
			defer "kill \$(cat /run/bench-nbdkit.pid)"
			;;
		qemu-nbd)
			[ -e "$BENCH_IMG" ] || bench_img
			qemu-nbd -f raw --cache=none --aio=threads --shared=16 -t -k "$sock" \
				--pid-file=/run/bench-qemu-nbd.pid --fork "$BENCH_IMG" || fail "qemu-nbd did not start"
			defer "kill \$(cat /run/bench-qemu-nbd.pid)"
			;;
		*) fail "BENCH_NBD_SERVERS=$NBD_SERVERS: nbdkit and/or qemu-nbd" ;;
		esac
		wait_until 10 test -S "$sock" || fail "no $srv socket"
		NBD_SOCK[$srv]=$sock
	done
	nbd_uri() { echo "nbd+unix:///?socket=${NBD_SOCK[$1]}"; }
	nbd_size() { blockdev --getsize64 "$1" 2>/dev/null || echo 0; }
	# hw_queues DEV: blk-mq's hardware queues of DEV (nbd: one a connection; ublk: one a queue)
	hw_queues() { find /sys/block/"${1#/dev/}"/mq -mindepth 1 -maxdepth 1 | wc -l; }
	knbd=0	# next /dev/nbdN; the last one (nbd15) is the attach rounds'

	# Attach latency: command to a usable block device (a size above 0 read by blockdev), both
	# sides the same way, BENCH_NBD_ATTACH rounds a server and connection count, interleaved.
	# ublkctl returns once udev has handled /dev/ublkbN; nbd-client once the kernel has the
	# connections. udevadm monitor stamps the uevents meanwhile, for bench/attach.py's stages.
	# With BENCH_NBD_TRACE=1, one more round a server, 1 connection, under strace -f -ttt: ublkd
	# (attached), ublkctl and nbd-client, their timelines printed (strace slows every syscall).
	if [ "$NBD_ATTACH" -gt 0 ]; then
		python3 -c 'import time; print(time.time_ns() - time.monotonic_ns())' > attach.offset
		udevadm monitor --kernel --udev --subsystem-match=block --subsystem-match=ublk-char > attach.uevents &
		mon=$!
		sleep 1
		ad=/dev/nbd15
		attach_out=attach.txt
		: > attach.txt
		attach_one() { # SERVER CONNS ROUND SIDE [strace...]
			local srv=$1 q=$2 i=$3 side=$4 d t0 t1 t2 t3
			shift 4
			t0=$(date +%s%N)
			if [ "$side" = ublkd ]; then
				d=$("$@" ublkctl add nbd "$(nbd_uri "$srv")" --queues "$q" --name lat)
			else
				d=$ad
				"$@" nbd-client -unix "${NBD_SOCK[$srv]}" "$d" -C "$q" >/dev/null 2>&1 || fail "nbd-client -C $q failed"
			fi
			t1=$(date +%s%N)
			for _ in $(seq 1000); do [ "$(nbd_size "$d")" -gt 0 ] && break; done
			t2=$(date +%s%N)
			[ "$(nbd_size "$d")" -gt 0 ] || fail "$d not usable"
			udevadm settle -t 10
			t3=$(date +%s%N)
			[ "$(hw_queues "$d")" = "$q" ] || fail "$d has $(hw_queues "$d") hw queues, not $q"
			if [ "$side" = ublkd ]; then ublkctl del lat; else nbd-client -d "$d" >/dev/null 2>&1; fi
			udevadm settle -t 10
			printf 'ATTACH {"server":"%s","conns":%d,"round":%d,"side":"%s","dev":"%s","t_cmd":%d,"t_ret":%d,"t_usable":%d,"t_end":%d,"ms":%d}\n' \
				"$srv" "$q" "$i" "$side" "${d#/dev/}" "$t0" "$t1" "$t2" "$t3" $(( (t2 - t0) / 1000000 )) \
				| tee -a "$attach_out"
		}
		for i in $(seq "$NBD_ATTACH"); do
			for srv in $NBD_SERVERS; do
				for q in $QUEUES; do
					attach_one "$srv" "$q" "$i" ublkd
					attach_one "$srv" "$q" "$i" nbd-client
				done
			done
		done
		if [ "$NBD_TRACE" = 1 ]; then
			attach_out=attach-traced.txt
			for srv in $NBD_SERVERS; do
				strace -f -ttt -o "trace-ublkd-$srv" -p "$(ublkd_pid)" 2>/dev/null &
				st=$!
				sleep 2
				attach_one "$srv" 1 0 ublkd strace -f -ttt -o "trace-ublkctl-$srv"
				attach_one "$srv" 1 0 nbd-client strace -f -ttt -o "trace-nbd-client-$srv"
				kill -INT "$st"; wait "$st" || true
				for f in ublkctl ublkd nbd-client; do
					echo "----- strace of $f, attach to $srv (1 connection): $(wc -l < "trace-$f-$srv") lines -----"
					cut -c1-200 "trace-$f-$srv"
				done
			done
		fi
		kill -INT "$mon"; wait "$mon" || true
		# What a process start and a bus round trip cost here, for the stages: 5 each, median
		for c in /bin/true "ublkctl list" "ublkctl features" "nbd-client -V"; do
			for i in 1 2 3 4 5; do
				t0=$(date +%s%N); $c >/dev/null 2>&1 || true; echo $(( ($(date +%s%N) - t0) / 1000000 ))
			done | sort -n | awk -v c="$c" '{ a[NR] = $1 } END { printf "attach baseline: %s: median %d ms (%d-%d)\n", c, a[3], a[1], a[5] }'
		done
		python3 "$UBLKD_SRC/bench/attach.py" attach.txt attach.uevents "$(cat attach.offset)"
	fi

	for srv in $NBD_SERVERS; do
		for q in $QUEUES; do
			d=/dev/nbd$knbd
			knbd=$((knbd + 1))
			nbd-client -unix "${NBD_SOCK[$srv]}" "$d" -C "$q" >/dev/null 2>&1 || fail "nbd-client -C $q on $srv failed"
			defer "nbd-client -d $d >/dev/null 2>&1"
			DEV[knbd-$srv-$q]=$d
			DEV[unbd-$srv-$q]=$(ublkctl add nbd "$(nbd_uri "$srv")" --queues "$q" --name "u$srv$q")
			[ "$PIN" = 1 ] && pin_queue_threads "${DEV[unbd-$srv-$q]}" "$q"
			for s in knbd unbd; do
				[ "$(hw_queues "${DEV[$s-$srv-$q]}")" = "$q" ] || fail "${DEV[$s-$srv-$q]} has" \
					"$(hw_queues "${DEV[$s-$srv-$q]}") hw queues, not $q (ublk: as many as vCPUs at most; --smp)"
			done
			echo "$srv, $q connection(s): kernel ${DEV[knbd-$srv-$q]}, ublkd ${DEV[unbd-$srv-$q]}"
		done
	done
fi
ublkctl list

# pairs: "target:ours:theirs:jobs" compared on equal footing (same jobs and depth)
pairs=()
for q in $QUEUES; do
	has_target loop && pairs+=("loop:uloop$q:kloop:$q")
	has_target loop && [ "${zc:-0}" = 1 ] && pairs+=("loop-copy:ucloop$q:kloop:$q")
	has_target null && pairs+=("null:unull$q:knull$q:$q")
	# nbd: as many connections on each side, a target column per server
	if has_target nbd; then
		for srv in $NBD_SERVERS; do pairs+=("$srv:unbd-$srv-$q:knbd-$srv-$q:$q"); done
	fi
done

run_pairs | tee results.txt

bench_summary results.txt ublkd kernel
