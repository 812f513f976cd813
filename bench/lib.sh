# bench/lib.sh: what the benchmark's guest scripts (bench-guest.sh, bench-kmod.sh) share.
# Source it after test/vm/lib.sh. Knobs (environment, passed in by tools/bench):
#   BENCH_RUNS (3), BENCH_RUNTIME (seconds per fio run, 5), BENCH_DEPTHS ("1 32 128"),
#   BENCH_RW ("randread randwrite"), BENCH_QUEUES ("1 2"), BENCH_TARGETS ("loop null"; also nbd),
#   BENCH_BS (fio's block size, 4k), BENCH_PIN (0; 1: fio's jobs and ublkd's queue threads pinned,
#   see fio_iops and pin_queue_threads), BENCH_BACKING (tmpfs; brd: see bench_img),
#   BENCH_EVENTS (none; perf events to count per IO, e.g. "io_uring:io_uring_queue_async_work,
#   syscalls:sys_enter_io_uring_enter": see fio_iops), BENCH_BATCH (1; N: fio submits N IOs in one
#   io_uring_enter once N have completed, so that blk-mq gets them as one plugged batch),
#   BENCH_QUEUE_SCHED (unset; batch: ublkd's queue threads under SCHED_BATCH, which does not
#   preempt the task that woke it, with BENCH_PIN=1), BENCH_CTL_DEVICES (64; bench-guest.sh
#   times that many Add+Start and Del of a null device, 0: not at all), BENCH_NBD_SERVERS ("nbdkit qemu-nbd": the NBD servers of BENCH_TARGETS=nbd),
#   BENCH_NBD_ATTACH (5: attach rounds a server and connection count, 0: none; the figures are
#   wall clock, meaningless under --icount), BENCH_NBD_TRACE (0; 1: one more attach a server
#   under strace, its syscall timelines printed)
# shellcheck shell=bash
RUNS=${BENCH_RUNS:-3}
RUNTIME=${BENCH_RUNTIME:-5}
DEPTHS=${BENCH_DEPTHS:-1 32 128}
RWS=${BENCH_RW:-randread randwrite}
QUEUES=${BENCH_QUEUES:-1 2}
TARGETS=${BENCH_TARGETS:-loop null}
BS=${BENCH_BS:-4k}
PIN=${BENCH_PIN:-0}
BACKING=${BENCH_BACKING:-tmpfs}
case $BACKING in
tmpfs) BENCH_IMG=/mnt/bench/disk.img ;;
brd) BENCH_IMG=/dev/ram0 ;;
*) fail "BENCH_BACKING=$BACKING: tmpfs or brd" ;;
esac
BATCH=${BENCH_BATCH:-1}
CTL_DEVICES=${BENCH_CTL_DEVICES:-64}
NBD_SERVERS=${BENCH_NBD_SERVERS:-nbdkit qemu-nbd}
NBD_ATTACH=${BENCH_NBD_ATTACH:-5}
NBD_TRACE=${BENCH_NBD_TRACE:-0}
[[ $NBD_ATTACH =~ ^[0-9]+$ ]] || fail "BENCH_NBD_ATTACH=$NBD_ATTACH: a number of rounds"
[[ $BATCH =~ ^[1-9][0-9]*$ ]] || fail "BENCH_BATCH=$BATCH: a number of IOs, 1 or more"
EVENTS=${BENCH_EVENTS:-}
if [ -n "$EVENTS" ]; then
	command -v perf >/dev/null || fail "BENCH_EVENTS needs perf (apt install linux-perf on the host)"
	mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing \
		|| fail "BENCH_EVENTS: cannot mount tracefs"
	perf stat -a -x "," -e "$EVENTS" -o /dev/null -- true \
		|| fail "BENCH_EVENTS=$EVENTS: perf stat cannot count these (perf list shows what it can)"
fi

# has_target T: T is one of $TARGETS
has_target() {
	[[ " $TARGETS " == *" $1 "* ]]
}

# bench_img: $BENCH_IMG, what every loop device of the run reads and writes: 1 GiB of random data
# in RAM. BENCH_BACKING=tmpfs: a file on a fresh tmpfs at /mnt/bench. brd: the RAM disk /dev/ram0.
# On 6.12, io_uring hands every one of ublkd's reads and writes of a tmpfs file to an io-wq
# worker, and with 2 queues the workers' writes spin on the file's inode lock: the work per IO
# then swings by up to 13 % from run to run (bench/RESULTS.md, 2026-12-05). brd takes ublkd's
# reads and writes inline, as a disk does with O_DIRECT.
bench_img() {
	if [ "$BACKING" = brd ]; then
		[ -b "$BENCH_IMG" ] || modprobe brd rd_nr=1 rd_size=1048576 max_part=0 \
			|| fail "modprobe brd failed"
		wait_until 10 test -b "$BENCH_IMG" || fail "modprobe brd: no $BENCH_IMG"
		dd if=/dev/urandom of="$BENCH_IMG" bs=1M count=1024 oflag=direct status=none
		return
	fi
	mkdir -p /mnt/bench
	mountpoint -q /mnt/bench || mount -t tmpfs -o size=1200M tmpfs /mnt/bench
	dd if=/dev/urandom of="$BENCH_IMG" bs=1M count=1024 status=none
}

# profile_snapshot NAME: tb-insns (tools/bench --profile) writes its counters to
# $VMTEST_PROFILE/NAME.snap; returns once it has
profile_snapshot() {
	echo "$1" > "$VMTEST_PROFILE/request.tmp"
	mv "$VMTEST_PROFILE/request.tmp" "$VMTEST_PROFILE/request"
	wait_until 120 test ! -e "$VMTEST_PROFILE/request" || fail "profile: the plugin wrote no snapshot $1"
	[ -s "$VMTEST_PROFILE/$1.snap" ] || fail "profile: no $VMTEST_PROFILE/$1.snap"
}

# fio_iops DEV RW DEPTH JOBS: IOPS of one fio run ($RUNTIME s, $BS, io_uring, O_DIRECT); 0 if fio failed.
# With PIN=1, job i runs on CPU i only, so that where fio runs is not the scheduler's choice,
# made anew in every run. With BENCH_EVENTS, fio runs under "perf stat -a" and fio.events gets
# each event's count on all CPUs divided by the IOs fio did, for result() (with --icount, where
# an IO's instructions go: how many syscalls, task work runs, context switches, io-wq hand-offs).
fio_iops() {
	local pin=() stat=() batch=() ios snap=$BASHPID
	# never more than the depth: a batch that cannot fill would wait forever
	local nbatch=$(( BATCH < $3 ? BATCH : $3 ))
	[ "$PIN" = 1 ] && pin=(--cpus_allowed="0-$(($4 - 1))" --cpus_allowed_policy=split)
	[ "$nbatch" -gt 1 ] && batch=(--iodepth_batch_submit="$nbatch" --iodepth_batch_complete_min="$nbatch")
	[ -n "$EVENTS" ] && stat=(perf stat -a -x "," -o perf.csv -e "$EVENTS" --)
	rm -f fio.events
	[ -z "${VMTEST_PROFILE:-}" ] || profile_snapshot "pre-$snap"
	"${stat[@]}" fio "${pin[@]}" "${batch[@]}" --name=b --filename="$1" --rw="$2" --bs="$BS" --iodepth="$3" --numjobs="$4" --ioengine=io_uring \
		--direct=1 --runtime="$RUNTIME" --time_based --group_reporting --output-format=json \
		--output=fio.json >/dev/null 2>&1 || { echo 0; return; }
	[ -z "${VMTEST_PROFILE:-}" ] || profile_snapshot "post-$snap"
	sed -i '/^{/,$!d' fio.json
	ios=$(jq '.jobs[0].read.total_ios + .jobs[0].write.total_ios' fio.json)
	if [ -n "${VMTEST_PROFILE:-}" ]; then
		python3 "$UBLKD_SRC/bench/profile.py" "$VMTEST_PROFILE/pre-$snap.snap" \
			"$VMTEST_PROFILE/post-$snap.snap" "$ios" "${1#/dev/} $2 depth $3 jobs $4" \
			"$(ublkd_pid)" > fio.profile || fail "profile.py failed"
		rm -f "$VMTEST_PROFILE/pre-$snap.snap" "$VMTEST_PROFILE/post-$snap.snap"
	fi
	if [ -n "$EVENTS" ]; then
		awk -F, -v ios="$ios" '!/^#/ && $1 ~ /^[0-9]+$/ && ios > 0 {
			printf "%s\"%s\":%.4f", n++ ? "," : "", $3, $1 / ios }' perf.csv > fio.events
	fi
	if [ -s fio.profile ]; then
		[ -s fio.events ] && printf , >> fio.events
		cat fio.profile >> fio.events
		rm -f fio.profile
	fi
	jq --arg rw "$2" '(if $rw == "randread" then .jobs[0].read else .jobs[0].write end).iops | floor' fio.json
}

# pin_queue_threads DISK QUEUES: ublkd's thread of queue q on CPU (q + QUEUES) mod nproc, the
# CPU of fio's job q with 2 queues (blk-mq maps that CPU to queue q), the other CPU with 1 queue.
# For PIN=1, so that the queue threads' CPUs are not the scheduler's choice either.
pin_queue_threads() {
	local id=${1#/dev/ublkb} pid task comm q pinned=0
	pid=$(ublkd_pid)
	for task in /proc/"$pid"/task/*; do
		comm=$(cat "$task/comm" 2>/dev/null) || continue
		[[ $comm == "ublk$id-q"* ]] || continue
		q=${comm#"ublk$id-q"}
		taskset -pc $(( (q + $2) % $(nproc) )) "${task##*/}" >/dev/null || fail "taskset of $comm failed"
		if [ "${BENCH_QUEUE_SCHED:-}" = batch ]; then
			chrt -b -p 0 "${task##*/}" || fail "chrt -b of $comm failed"
		fi
		pinned=$((pinned + 1))
	done
	[ "$pinned" = "$2" ] || fail "pin_queue_threads: $pinned queue threads of ublk$id found, not $2"
}

# result RUN RW DEPTH JOBS TARGET SIDE DEV IOPS: one "RESULT {json}" line. SIDE is "ours" or "base";
# the summary compares the two sides of each (rw, depth, jobs, target). With BENCH_EVENTS, the
# line has the counts per IO of the fio run just done too ("events").
result() {
	local events=
	[ -s fio.events ] && events=",\"events\":{$(cat fio.events)}"
	rm -f fio.events
	printf 'RESULT {"run":%d,"rw":"%s","depth":%d,"jobs":%d,"target":"%s","side":"%s","dev":"%s","iops":%d%s}\n' \
		"$@" "$events"
}

# run_pairs: the caller's pairs ("target:ours:theirs:jobs", keys of its DEV array) each measured
# on both sides, theirs first, interleaved: every pair once per rw and depth, then the next round.
run_pairs() {
	local run rw depth p target ours theirs jobs iops
	for run in $(seq "$RUNS"); do
		for rw in $RWS; do
			for depth in $DEPTHS; do
				for p in "${pairs[@]}"; do
					IFS=: read -r target ours theirs jobs <<< "$p"
					iops=$(fio_iops "${DEV[$theirs]}" "$rw" "$depth" "$jobs")
					result "$run" "$rw" "$depth" "$jobs" "$target" base "$theirs" "$iops"
					iops=$(fio_iops "${DEV[$ours]}" "$rw" "$depth" "$jobs")
					result "$run" "$rw" "$depth" "$jobs" "$target" ours "$ours" "$iops"
				done
			done
		done
	done
}

# bench_summary FILE OURS_LABEL BASE_LABEL: medians and ratios (ours / base) of FILE's RESULT lines,
# as text and as a markdown table for bench/RESULTS.md
bench_summary() {
	python3 "$UBLKD_SRC/bench/summary.py" "$@"
}
