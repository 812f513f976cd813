#!/bin/bash
# Our own ublk driver (src/kernel/module) serves one queue whose tags are fetched on two rings
# of one task, or by two processes on one ring (kmod-srv.c's tworings and twotasks), under a
# verifying fio: the batched dispatch, which hands a busy queue's requests over several on one
# task work, must keep the two apart. On 6.1, where a queue's commands come from one task only,
# the second process's FETCH_REQs are refused.
# Skips unless the run uses our module (vm-run --driver .../ublk_drv.ko).
# vm-timeout: 300
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
. "$UBLKD_SRC/test/vm/kmod-lib.sh"

kmod_start
build_kmod_srv

# split_serve MODE PART: the device of ./srv MODE, which serves one queue's even and odd tags
# on two PARTs (ring or task), under a verifying fio at depth 16 (the device's is 8, so that
# requests of both parts wait at once); then STOP/DEL. Each part must serve over 1000 requests.
split_serve() {
	local mode=$1 part=$2 fio_pid first n

	wait_until 20 test -b /dev/ublkb$id || fail "$mode: no /dev/ublkb$id: $(cat srv.log)"
	fio --name=v --filename=/dev/ublkb$id --rw=randwrite --bs=4k --iodepth=16 --ioengine=io_uring \
		--direct=1 --size=32M --verify=crc32c --verify_fatal=1 > fio-$mode.log 2>&1 &
	fio_pid=$!
	if ! wait_until 180 exited "$fio_pid"; then
		kill -9 "$srv_pid"
		fail "$mode: fio still runs after 180 s (requests lost between the ${part}s?): $(cat srv.log)"
	fi
	wait "$fio_pid" || fail "$mode: verifying fio failed: $(grep -m 3 -i 'verify\|crc' fio-$mode.log)"
	./srv del "$id" 2>>srv.log || fail "$mode: STOP/DEL failed: $(cat srv.log)"
	wait "$srv_pid" || fail "$mode: server exit status $?: $(cat srv.log)"
	for first in 0 1; do
		n=$(sed -n "s/^$part of tags $first+2: \([0-9]*\) requests$/\1/p" srv.log)
		[ "${n:-0}" -gt 1000 ] || fail "$mode: the $part of tags $first+2 served '${n:-}' requests: $(cat srv.log)"
	done
	echo "$mode: 32 MiB written at depth 16 and verified; $(grep "^$part of tags" srv.log | tr '\n' ' ')"
}

# One queue's tags fetched on two rings (even tags, odd tags) of one task. The driver hands a
# busy queue's requests over in batches, several on one task work; a request whose command
# came on the other ring must still complete there.
start_srv tworings tworings 64
split_serve tworings ring

# One queue's tags fetched on one ring by two processes: the even tags by the server, the odd
# ones by a child it forked, in its own mm. On 6.12 a batch on the parent's task work may list
# a request whose command is the child's: its data must be copied in the child's task, or the
# child serves what its buffer held before and the verifying fio fails. 6.1 takes a queue's
# commands from one task only (compat.h): the child's FETCH_REQ fails with EINVAL.
start_srv twotasks twotasks 64
if [ "$UBLKD_VM_KERNEL" = 6.1 ]; then
	wait_until 20 exited "$srv_pid" || fail "twotasks: the server still runs though 6.1 refuses a second task: $(cat srv.log)"
	rc=0
	wait "$srv_pid" || rc=$?
	[ $rc = 3 ] || fail "twotasks: server exit status $rc, not 3 (a command refused): $(cat srv.log)"
	[ "$(grep -c '^task of tags 1+2: tag [0-9]*: -22$' srv.log)" = 4 ] ||
		fail "twotasks: the child's four FETCH_REQs were not all refused with EINVAL: $(cat srv.log)"
	./srv del "$id" 2>>srv.log || fail "twotasks: STOP/DEL failed: $(cat srv.log)"
	echo "twotasks: 6.1 refused the FETCH_REQs of a queue's second task with EINVAL"
else
	split_serve twotasks task
fi
echo ok
