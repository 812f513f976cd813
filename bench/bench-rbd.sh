#!/bin/bash
# vm-timeout: 3000
# Runs inside the VM (tools/bench --rbd): ublkd's rbd target against the kernel's rbd driver
# (krbd, "rbd device map") and rbd-nbd, on the boot's single-node Ceph cluster
# (test/vm/ceph-cluster), the same image mapped by all three, interleaved round by round.
# Each fio run moves the image's exclusive lock to its writer first (librbd and krbd hand it
# over on request); the image is written whole first, so that reads reach the OSD.
# Prints one JSON line per fio run ("RESULT {...}") and, at the end, medians and ratios
# (target "krbd": ublkd / krbd; target "rbd-nbd": ublkd / rbd-nbd).
# env: BENCH_* (bench/lib.sh); BENCH_DEPTHS defaults to "1 32" here.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
BENCH_DEPTHS=${BENCH_DEPTHS:-1 32}
. "$UBLKD_SRC/bench/lib.sh"
require_cmd fio jq rbd-nbd

start_ublkd
ceph_cluster_up
C=$CEPH_TEST_DIR
echo "kernel $(uname -r), $(nproc) vCPUs, runs=$RUNS runtime=${RUNTIME}s, $(ceph --version | cut -d' ' -f1-3)"
rbd_admin create --size 256M rbd/bench
declare -A DEV=()
DEV[krbd]=$(rbd_admin device map rbd/bench) || fail "rbd device map failed (no rbd.ko?)"
defer "rbd_admin device unmap rbd/bench"
fio --name=fill --filename="${DEV[krbd]}" --rw=write --bs=1M --direct=1 --ioengine=libaio --iodepth=8 \
	> /dev/null || fail "filling the image failed"
modprobe nbd nbds_max=4 || fail "modprobe nbd failed"
DEV[nbd]=$(rbd-nbd map rbd/bench -c "$C/ceph.conf" -n client.admin -k "$C/admin.keyring") || fail "rbd-nbd map failed"
defer "rbd-nbd unmap ${DEV[nbd]}"
for q in $QUEUES; do
	DEV[urbd$q]=$(ublkctl add rbd rbd/bench --queues "$q" --name "urbd$q" \
		--ceph-conf "$C/client.conf" --keyring "$C/admin.keyring")
	[ "$PIN" = 1 ] && pin_queue_threads "${DEV[urbd$q]}" "$q"
done
ublkctl list
echo "krbd ${DEV[krbd]}, rbd-nbd ${DEV[nbd]}"

pairs=()
for q in $QUEUES; do
	pairs+=("krbd:urbd$q:krbd:$q" "rbd-nbd:urbd$q:nbd:$q")
done
run_pairs | tee results.txt
for q in $QUEUES; do ublkctl del "urbd$q"; done
bench_summary results.txt "ublkd rbd" other
