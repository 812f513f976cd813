#!/bin/bash
# Our own ublk driver (src/kernel/module) takes plugged batches of requests in one go (6.12):
# fio hands io_uring 16 IOs at a time, blk-mq passes each plug's requests to ublk_queue_rqs(),
# which hands a queue's run of them to the server in one go. Data verified on a 2-queue loop
# device of ublkd; a kprobe counts the calls, which must carry more than 2 requests each on
# average, or this says nothing about batches.
# Skips unless the run uses our module (vm-run --driver .../ublk_drv.ko), and on 6.1, where
# the module does not wire queue_rqs (6.1 passes it a bare list, compat.h).
# vm-timeout: 120
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
. "$UBLKD_SRC/test/vm/kmod-lib.sh"

[ "$UBLKD_VM_KERNEL" != 6.1 ] || skip "6.1: the module leaves queue_rqs unset there (compat.h)"
kmod_start
start_ublkd
kprobe_count kmod_qrqs ublk_queue_rqs

truncate -s 64M /dev/shm/kmod-batch.img
defer "rm -f /dev/shm/kmod-batch.img"
bdev=$(ublkctl add loop /dev/shm/kmod-batch.img --queues 2 --name kmodbatch)
wait_until 10 test -b "$bdev" || fail "no $bdev"
ios_before=$(ios_done "${bdev#/dev/}")
fio --name=b --filename="$bdev" --rw=randwrite --bs=4k --iodepth=32 --iodepth_batch_submit=16 \
	--iodepth_batch_complete_min=16 --numjobs=2 --size=16M --offset_increment=32M \
	--ioengine=io_uring --direct=1 --verify=crc32c --verify_fatal=1 --group_reporting \
	--output-format=json --output=fio-batch.json > /dev/null 2>&1 ||
	fail "verifying fio failed: $(head -c 1500 fio-batch.json)"
sed -i '/^{/,$!d' fio-batch.json
jq -e '.jobs[0].error == 0 and .jobs[0].read.total_ios > 0' fio-batch.json > /dev/null ||
	fail "fio reported errors: $(head -c 1500 fio-batch.json)"
ios=$(( $(ios_done "${bdev#/dev/}") - ios_before ))
calls=$(kprobe_hits kmod_qrqs)
[ "${calls:-0}" -gt 0 ] && [ "$ios" -gt $(( 2 * calls )) ] ||
	fail "$ios requests in ${calls:-no} ublk_queue_rqs() calls"
echo "batches: $ios requests verified, $calls ublk_queue_rqs() calls ($(( ios / calls )) requests each)"
ublkctl del kmodbatch
echo ok
