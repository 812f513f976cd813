#!/bin/bash
# vm-timeout: 3000
# Runs inside the VM (tools/bench --qcow2): ublkd's qcow2 target (issue 33) against what people
# use today, qemu-nbd with the kernel's nbd driver (nbd-client over a unix socket), and against
# ublkd's loop target on the same data as a raw file; one boot, interleaved round by round.
#   qnbd:       a fully allocated image (BENCH_QCOW2_SIZE of random data, qemu-img convert,
#               64 KiB clusters): ublkd qcow2 on one copy, qemu-nbd on another, identical copy
#               (cp: one writer per file, and tmpfs has no reflink)
#   raw-loop:   the same ublkd qcow2 device against ublkd loop on `qemu-img convert -O raw` of
#               the image (the data the qcow2 device serves, without the format)
#   qnbd-fresh: randwrite only: each side gets a new empty image (BENCH_QCOW2_FRESH, sparse) for
#               every fio run, so that the writes allocate clusters; a FRESH line says how many
#               of the run's writes allocated one (qemu-img check's allocated clusters / writes)
# qemu-nbd: -f qcow2 --cache=none --aio=io_uring (BENCH_QNBD_CACHE, BENCH_QNBD_AIO): O_DIRECT
# as one serves a block device from an image (no second page cache under the guest's), and
# io_uring as ublkd uses; on tmpfs, O_DIRECT and buffered IO are the same page copy, and ublkd's
# qcow2 engine opens the image without O_DIRECT. The two sides of a pair alternate which goes
# first from round to round (odd rounds theirs first).
# Prints one JSON line per fio run ("RESULT {...}") and, at the end, medians and ratios
# (ours = ublkd qcow2; base = qemu-nbd + nbd, or ublkd loop on the raw file).
# env: BENCH_* (bench/lib.sh); here BENCH_DEPTHS defaults to "1 32", BENCH_QUEUES to "1"
# ("1 2": a 2-queue ublkd qcow2 device on a third copy, against 2 fio jobs on the same nbd
# device and a 2-queue ublkd loop), BENCH_QCOW2_SIZE (512M), BENCH_QCOW2_FRESH (4G),
# BENCH_QCOW2_DIR (/mnt/q2bench: a tmpfs mounted there for the images).
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
BENCH_DEPTHS=${BENCH_DEPTHS:-1 32}
BENCH_QUEUES=${BENCH_QUEUES:-1}
. "$UBLKD_SRC/bench/lib.sh"
require_cmd fio jq qemu-img qemu-nbd nbd-client
SIZE=${BENCH_QCOW2_SIZE:-512M}
FRESH=${BENCH_QCOW2_FRESH:-4G}
QCACHE=${BENCH_QNBD_CACHE:-none}
QAIO=${BENCH_QNBD_AIO:-io_uring}
[[ $SIZE =~ ^[1-9][0-9]*M$ ]] || fail "BENCH_QCOW2_SIZE=$SIZE: a size in M"

start_ublkd
echo "kernel $(uname -r), $(nproc) vCPUs, $(qemu-nbd --version | head -1), runs=$RUNS runtime=${RUNTIME}s"
# Images on a tmpfs of their own: /run's is too small. Up to 4 allocated copies and one fresh
# image at a time (qemu writes whole 64 KiB clusters where it allocates).
T=${BENCH_QCOW2_DIR:-/mnt/q2bench}
mkdir -p $T
mount -t tmpfs -o size=3G tmpfs $T
defer "umount -l $T"

dd if=/dev/urandom of=$T/src.raw bs=1M count="${SIZE%M}" status=none
qemu-img convert -f raw -O qcow2 -o cluster_size=64k $T/src.raw $T/q-ublk1.qcow2
rm $T/src.raw
qemu-img convert -f qcow2 -O raw $T/q-ublk1.qcow2 $T/data.raw
check=$(qemu-img check --output=json $T/q-ublk1.qcow2)
jq -e '."allocated-clusters" == ."total-clusters"' <<<"$check" >/dev/null ||
	fail "the image is not fully allocated: $check"
echo "image: $SIZE, $(qemu-img info --output=json $T/q-ublk1.qcow2 |
	jq -r '"cluster \(."cluster-size"), compat \(."format-specific".data.compat)"'), $(jq '."allocated-clusters"' <<<"$check") of $(jq '."total-clusters"' <<<"$check") clusters allocated"
cp $T/q-ublk1.qcow2 $T/q-qnbd.qcow2
for q in $QUEUES; do [ "$q" = 1 ] || cp $T/q-ublk1.qcow2 "$T/q-ublk$q.qcow2"; done
df -h $T | tail -1

modprobe nbd nbds_max=4 || fail "modprobe nbd failed"
knbd_up() { [ "$(blockdev --getsize64 "$1" 2>/dev/null || echo 0)" -gt 0 ]; }
# qnbd_up IMG SOCK NBDDEV: qemu-nbd serving IMG on SOCK, NBDDEV connected to it; its pid in SOCK.pid
qnbd_up() {
	rm -f "$2"
	qemu-nbd -f qcow2 --cache="$QCACHE" --aio="$QAIO" -t -k "$2" --fork --pid-file="$2.pid" "$1" ||
		fail "qemu-nbd -f qcow2 --cache=$QCACHE --aio=$QAIO failed"
	wait_until 10 test -S "$2" || fail "no qemu-nbd socket"
	nbd-client -unix "$2" "$3" >/dev/null 2>&1 || fail "nbd-client -unix $2 $3 failed"
	wait_until 10 knbd_up "$3" || fail "$3 not usable"
	# with pins: qemu-nbd's threads where ublkd's 1-queue thread goes (fio's job 0 is on CPU 0)
	[ "$PIN" = 1 ] && { taskset -a -p -c 1 "$(cat "$2.pid")" >/dev/null || fail "taskset qemu-nbd failed"; }
	return 0
}
# qnbd_down SOCK NBDDEV: disconnected, qemu-nbd ended (the image closed)
qnbd_down() {
	local pid
	pid=$(cat "$1.pid")
	nbd-client -d "$2" >/dev/null 2>&1 || true
	kill "$pid" 2>/dev/null || true
	wait_until 20 exited "$pid" || fail "qemu-nbd $pid did not end"
}

declare -A DEV=()
qnbd_up $T/q-qnbd.qcow2 $T/qnbd.sock /dev/nbd0
defer "qnbd_down $T/qnbd.sock /dev/nbd0"
DEV[knbd]=/dev/nbd0
for q in $QUEUES; do
	DEV[uq$q]=$(ublkctl add qcow2 "$T/q-ublk$q.qcow2" --queues "$q" --name "uq$q")
	DEV[uloop$q]=$(ublkctl add loop $T/data.raw --queues "$q" --name "uloop$q")
	if [ "$PIN" = 1 ]; then
		pin_queue_threads "${DEV[uq$q]}" "$q"
		pin_queue_threads "${DEV[uloop$q]}" "$q"
	fi
done
ublkctl list
# odirect PID PATH: 1 if PID has PATH open with O_DIRECT, 0 if without, ? if not open
odirect() {
	local f
	f=$(fd_flags "$1" "$2") && echo $(( 8#$f >> 14 & 1 )) || echo "?"
}
echo "O_DIRECT on the image: qemu-nbd (--cache=$QCACHE --aio=$QAIO) $(odirect "$(cat $T/qnbd.sock.pid)" $T/q-qnbd.qcow2)," \
	"ublkd qcow2 $(odirect "$(ublkd_pid)" $T/q-ublk1.qcow2), ublkd loop $(odirect "$(ublkd_pid)" $T/data.raw)"
# All three serve the same bytes (before any write).
for d in "${DEV[knbd]}" "${DEV[uloop1]}"; do
	cmp -n $((64 << 20)) "${DEV[uq1]}" "$d" || fail "${DEV[uq1]} and $d differ"
done
echo "the first 64 MiB read equal through ublkd qcow2, qemu-nbd + nbd and ublkd loop (raw)"

# measure RUN RW DEPTH JOBS TARGET SIDE NAME: one fio run on DEV[NAME], its RESULT line
measure() {
	local iops
	# assigned first: a fail() inside fio_iops ends its subshell, which only an assignment's
	# status (set -e) carries out of $(...)
	iops=$(fio_iops "${DEV[$7]}" "$2" "$3" "$4")
	result "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$iops"
}

# fresh RUN DEPTH JOBS SIDE: one randwrite fio run on a new empty image, ours (ublkd qcow2 with
# JOBS queues) or base (qemu-nbd + nbd); then the image closed and checked
fresh() {
	local run=$1 depth=$2 jobs=$3 side=$4 img=$T/fresh.qcow2 name ios check
	qemu-img create -q -f qcow2 -o cluster_size=64k $img "$FRESH"
	if [ "$side" = ours ]; then
		name=ufresh$jobs
		DEV[$name]=$(ublkctl add qcow2 $img --queues "$jobs" --name "$name")
		[ "$PIN" = 1 ] && pin_queue_threads "${DEV[$name]}" "$jobs"
	else
		name=knbd-fresh
		qnbd_up $img $T/fresh.sock /dev/nbd1
		DEV[$name]=/dev/nbd1
	fi
	measure "$run" randwrite "$depth" "$jobs" qnbd-fresh "$side" "$name"
	ios=$(jq '.jobs[0].write.total_ios' fio.json 2>/dev/null || echo 0)
	if [ "$side" = ours ]; then
		ublkctl del "$name"
	else
		qnbd_down $T/fresh.sock /dev/nbd1
	fi
	check=$(qemu-img check --output=json $img 2>/dev/null) || fail "fresh image not clean after $name: $check"
	printf 'FRESH {"run":%d,"depth":%d,"jobs":%d,"side":"%s","writes":%d,"allocated":%d,"tmpfs_kib":%d}\n' \
		"$run" "$depth" "$jobs" "$side" "$ios" "$(jq '."allocated-clusters" // 0' <<<"$check")" \
		"$(du -k $img | cut -f1)"
	rm -f $img
}

pairs=()
for q in $QUEUES; do
	pairs+=("qnbd:uq$q:knbd:$q" "raw-loop:uq$q:uloop$q:$q")
done
rounds() {
	local run rw depth p target ours theirs jobs q first second
	for run in $(seq "$RUNS"); do
		for rw in $RWS; do
			for depth in $DEPTHS; do
				for p in "${pairs[@]}"; do
					IFS=: read -r target ours theirs jobs <<<"$p"
					if [ $((run % 2)) = 1 ]; then
						measure "$run" "$rw" "$depth" "$jobs" "$target" base "$theirs"
						measure "$run" "$rw" "$depth" "$jobs" "$target" ours "$ours"
					else
						measure "$run" "$rw" "$depth" "$jobs" "$target" ours "$ours"
						measure "$run" "$rw" "$depth" "$jobs" "$target" base "$theirs"
					fi
				done
				[ "$rw" = randwrite ] || continue
				for q in $QUEUES; do
					first=base second=ours
					[ $((run % 2)) = 1 ] || first=ours second=base
					fresh "$run" "$depth" "$q" $first
					fresh "$run" "$depth" "$q" $second
				done
			done
		done
	done
}
rounds | tee results.txt
for q in $QUEUES; do ublkctl del "uq$q"; ublkctl del "uloop$q"; done
echo
echo "fresh images, writes that allocated a cluster (allocated clusters / writes), per run:"
grep '^FRESH ' results.txt | sed 's/^FRESH //' |
	jq -r '"  run \(.run) depth \(.depth) jobs \(.jobs) \(.side): \(.writes) writes, \(.allocated) clusters (\(if .writes > 0 then (100 * .allocated / .writes | floor) else 0 end) %), \(.tmpfs_kib) KiB on tmpfs"'
bench_summary results.txt "ublkd qcow2" other
