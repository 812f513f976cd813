# bench/lib.sh: what the benchmark's guest scripts (bench-guest.sh, bench-kmod.sh) share.
# Source it after test/vm/lib.sh. Knobs (environment, passed in by tools/bench):
#   BENCH_RUNS (3), BENCH_RUNTIME (seconds per fio run, 5), BENCH_DEPTHS ("1 32 128"),
#   BENCH_RW ("randread randwrite"), BENCH_QUEUES ("1 2"), BENCH_TARGETS ("loop null"),
#   BENCH_BS (fio's block size, 4k), BENCH_PIN (0; 1: fio's jobs and ublkd's queue threads pinned,
#   see fio_iops and pin_queue_threads)
# shellcheck shell=bash
RUNS=${BENCH_RUNS:-3}
RUNTIME=${BENCH_RUNTIME:-5}
DEPTHS=${BENCH_DEPTHS:-1 32 128}
RWS=${BENCH_RW:-randread randwrite}
QUEUES=${BENCH_QUEUES:-1 2}
TARGETS=${BENCH_TARGETS:-loop null}
BS=${BENCH_BS:-4k}
PIN=${BENCH_PIN:-0}
BENCH_IMG=/mnt/bench/disk.img   # on tmpfs: every loop driver reads and writes the same pages

# has_target T: T is one of $TARGETS
has_target() {
	[[ " $TARGETS " == *" $1 "* ]]
}

# bench_img: a 1 GiB file of random data on a fresh tmpfs at /mnt/bench ($BENCH_IMG)
bench_img() {
	mkdir -p /mnt/bench
	mountpoint -q /mnt/bench || mount -t tmpfs -o size=1200M tmpfs /mnt/bench
	dd if=/dev/urandom of=$BENCH_IMG bs=1M count=1024 status=none
}

# fio_iops DEV RW DEPTH JOBS: IOPS of one fio run ($RUNTIME s, $BS, io_uring, O_DIRECT); 0 if fio failed.
# With PIN=1, job i runs on CPU i only, so that where fio runs is not the scheduler's choice,
# made anew in every run.
fio_iops() {
	local pin=()
	[ "$PIN" = 1 ] && pin=(--cpus_allowed="0-$(($4 - 1))" --cpus_allowed_policy=split)
	fio "${pin[@]}" --name=b --filename="$1" --rw="$2" --bs="$BS" --iodepth="$3" --numjobs="$4" --ioengine=io_uring \
		--direct=1 --runtime="$RUNTIME" --time_based --group_reporting --output-format=json \
		--output=fio.json >/dev/null 2>&1 || { echo 0; return; }
	sed -i '/^{/,$!d' fio.json
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
		pinned=$((pinned + 1))
	done
	[ "$pinned" = "$2" ] || fail "pin_queue_threads: $pinned queue threads of ublk$id found, not $2"
}

# result RUN RW DEPTH JOBS TARGET SIDE DEV IOPS: one "RESULT {json}" line. SIDE is "ours" or "base";
# the summary compares the two sides of each (rw, depth, jobs, target).
result() {
	printf 'RESULT {"run":%d,"rw":"%s","depth":%d,"jobs":%d,"target":"%s","side":"%s","dev":"%s","iops":%d}\n' "$@"
}

# bench_summary FILE OURS_LABEL BASE_LABEL: medians and ratios (ours / base) of FILE's RESULT lines,
# as text and as a markdown table for bench/RESULTS.md
bench_summary() {
	python3 "$UBLKD_SRC/bench/summary.py" "$@"
}
