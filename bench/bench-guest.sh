#!/bin/bash
# vm-timeout: 3000
# Runs inside the VM (tools/bench): ublkd's loop and null targets against the kernel's own loop
# driver and null_blk, in one boot, interleaved round by round, on the same backing file.
# Prints one JSON line per fio run ("RESULT {...}") and, at the end, medians and ratios.
# env: BENCH_RUNS (3), BENCH_RUNTIME (seconds per fio run, 5), BENCH_DEPTHS ("1 32 128"),
#      BENCH_RW ("randread randwrite"), BENCH_QUEUES ("1 2"), BENCH_TARGETS ("loop null")
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
RUNS=${BENCH_RUNS:-3}
RUNTIME=${BENCH_RUNTIME:-5}
DEPTHS=${BENCH_DEPTHS:-1 32 128}
RWS=${BENCH_RW:-randread randwrite}
QUEUES=${BENCH_QUEUES:-1 2}
TARGETS=${BENCH_TARGETS:-loop null}

start_ublkd
echo "kernel $(uname -r), $(nproc) vCPUs, ublk features $(ublkctl features), runs=$RUNS runtime=${RUNTIME}s"

# Devices under test: NAME=/dev/X, kernel's and ours, created once for the whole run.
declare -A DEV=()
img=/mnt/bench/disk.img         # on tmpfs: both loop drivers read and write the same pages
if [[ " $TARGETS " == *" loop "* ]]; then
	mkdir -p /mnt/bench
	mount -t tmpfs -o size=1200M tmpfs /mnt/bench
	dd if=/dev/urandom of=$img bs=1M count=1024 status=none
	DEV[kloop]=$(losetup --direct-io=on --show -f $img)
	echo "kernel loop: ${DEV[kloop]} dio=$(cat /sys/block/${DEV[kloop]#/dev/}/loop/dio)"
	# With auto buffer registration (7.x), uloop is zero-copy and ucloop the copy mode beside it.
	zc=0; (( $(ublkctl features) & (1 << 11) )) && zc=1
	for q in $QUEUES; do
		DEV[uloop$q]=$(ublkctl add loop $img --queues "$q" --name "uloop$q")
		[ $zc = 1 ] && DEV[ucloop$q]=$(ublkctl add loop $img --queues "$q" --zero-copy off --name "ucloop$q")
	done
	echo "ublkd loop: O_DIRECT=$(( 8#$(fd_flags "$(ublkd_pid)" $img) >> 14 & 1 ))"
fi
if [[ " $TARGETS " == *" null "* ]]; then
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
	done
fi
ublkctl list

fio_iops() {    # fio_iops DEV RW DEPTH JOBS
	fio --name=b --filename="$1" --rw="$2" --bs=4k --iodepth="$3" --numjobs="$4" --ioengine=io_uring \
		--direct=1 --runtime="$RUNTIME" --time_based --group_reporting --output-format=json \
		--output=fio.json >/dev/null 2>&1 || { echo 0; return; }
	sed -i '/^{/,$!d' fio.json
	jq --arg rw "$2" '(if $rw == "randread" then .jobs[0].read else .jobs[0].write end).iops | floor' fio.json
}

# pairs: "ours:theirs:jobs" compared on equal footing (same jobs and depth)
pairs=()
for q in $QUEUES; do
	[[ " $TARGETS " == *" loop "* ]] && pairs+=("uloop$q:kloop:$q")
	[[ " $TARGETS " == *" loop "* ]] && [ "${zc:-0}" = 1 ] && pairs+=("ucloop$q:kloop:$q")
	[[ " $TARGETS " == *" null "* ]] && pairs+=("unull$q:knull$q:$q")
done

for run in $(seq "$RUNS"); do
	for rw in $RWS; do
		for depth in $DEPTHS; do
			for p in "${pairs[@]}"; do
				IFS=: read -r ours theirs jobs <<< "$p"
				for dev in "$theirs" "$ours"; do
					iops=$(fio_iops "${DEV[$dev]}" "$rw" "$depth" "$jobs")
					echo "RESULT {\"run\":$run,\"rw\":\"$rw\",\"depth\":$depth,\"jobs\":$jobs,\"dev\":\"$dev\",\"iops\":$iops}"
				done
			done
		done
	done
done | tee results.txt

python3 - results.txt <<'PY'
import json, statistics, sys
rows = [json.loads(l.split(" ", 1)[1]) for l in open(sys.argv[1]) if l.startswith("RESULT ")]
med, order = {}, []
for r in rows:
    k = (r["rw"], r["depth"], r["jobs"], r["dev"])
    if k not in med:
        order.append(k)
    med.setdefault(k, []).append(r["iops"])
def theirs_of(ours):
    return "kloop" if "loop" in ours else "knull" + ours[len("unull"):]
print("\nmedians (IOPS) of %d run(s) and ratios, ublkd / kernel:" % max(r["run"] for r in rows))
print(f"{'rw':10} {'depth':>5} {'jobs':>4}  {'ublkd':>8} {'iops':>8}  {'kernel':>8} {'iops':>8}  ratio")
for rw, depth, jobs, dev in order:
    if not dev.startswith("u"):
        continue
    o = statistics.median(med[(rw, depth, jobs, dev)])
    t = statistics.median(med.get((rw, depth, jobs, theirs_of(dev)), [0]))
    print(f"{rw:10} {depth:>5} {jobs:>4}  {dev:>8} {o:>8.0f}  {theirs_of(dev):>8} {t:>8.0f}  {o / t if t else 0:5.2f}x")
PY
