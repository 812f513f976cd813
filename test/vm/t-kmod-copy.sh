#!/bin/bash
# Our own ublk driver (src/kernel/module) moves data right in each copy mode, ublkd's and those
# ublkd does not use, with kmod-srv.c (a RAM-disk server compiled here that talks to the driver
# directly): copy, NEED_GET_DATA, USER_COPY, splice (and its commits refused with EBUSY while a
# pipe or a tee() copy holds a write's pages), remap (fresh pages mapped over a tag's buffer
# after every request) and shift (a tag's buffer moved within its first page). No page the
# driver pinned outlives the server; the info commands answer what the device is. Then the
# server is killed with reads in flight: they end, the disk goes, DEL works.
# Skips unless the run uses our module (vm-run --driver .../ublk_drv.ko).
# vm-timeout: 300
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
. "$UBLKD_SRC/test/vm/kmod-lib.sh"

kmod_start
build_kmod_srv

# Every mode: no page the driver pinned outlives the server (pins taken less pins released).
# shift moves each tag's buffer within its first page after two requests, so that a full IO
# (16 KiB there) spans one page more than where the driver began keeping the buffer's pages: a
# driver that sized the window it watches and unpins from the first offset kept that page pinned
# (8 pins, one per tag, left after the server's exit).
head -c 8M /dev/urandom > pattern
for mode in copy getdata usercopy splice remap shift; do
	mpins0=$(pins_held)
	start_srv $mode $mode 64
	wait_until 20 test -b /dev/ublkb$id || fail "$mode: no /dev/ublkb$id: $(cat srv.log)"
	dd if=pattern of=/dev/ublkb$id bs=64k oflag=direct status=none || fail "$mode: direct write failed"
	dd if=pattern of=/dev/ublkb$id bs=1M seek=16 status=none conv=fsync || fail "$mode: buffered write failed"
	echo 3 > /proc/sys/vm/drop_caches
	cmp <(dd if=/dev/ublkb$id bs=128k count=64 iflag=direct status=none) pattern ||
		fail "$mode: direct read back differs"
	cmp <(dd if=/dev/ublkb$id bs=1M skip=16 count=8 status=none) pattern ||
		fail "$mode: buffered read back differs"
	if [ $mode = copy ]; then
		info=$(./srv info "$id") || fail "info commands failed: $info"
		echo "info: $info"
		want="id=$id/$id state=1/1 queues=1 depth=8 sectors=131072"
		want+=" disk=$((0x$(stat -c %t /dev/ublkb$id))):$((0x$(stat -c %T /dev/ublkb$id)))"
		want+=" char=$((0x$(stat -c %t /dev/ublkc$id))):$((0x$(stat -c %T /dev/ublkc$id))) cpus=$(nproc)"
		[ "$info" = "$want" ] || fail "info: expected '$want'"
	fi
	mpins=$(( $(pins_held) - mpins0 ))
	./srv del "$id" 2>>srv.log || fail "$mode: STOP/DEL failed: $(cat srv.log)"
	wait "$srv_pid" || fail "$mode: server exit status $?: $(cat srv.log)"
	grep -q "all tags aborted" srv.log || fail "$mode: server did not see its tags aborted: $(cat srv.log)"
	wait_until 10 pins_back_to "$mpins0" ||
		fail "$mode: $(( $(pins_held) - mpins0 )) pins left after the server's exit (of $mpins held while served)"
	if [ $mode = splice ]; then
		grep -q "^splice: commit with the pipe full: -16$" srv.log ||
			fail "splice: a commit while a pipe held the write's pages was not refused with EBUSY: $(cat srv.log)"
		grep -q "^splice: commit with a tee'd copy: -16$" srv.log ||
			fail "splice: a commit while a tee() copy held the write's pages was not refused with EBUSY: $(cat srv.log)"
		grep "^splice:" srv.log
	fi
	echo "$mode: 16 MiB written and read back (direct and buffered); pins held while served $mpins, after 0"
done

# The server killed with reads in flight: they end, the disk goes, DEL works.
start_srv kill copy 64
wait_until 20 test -b /dev/ublkb$id || fail "kill: no /dev/ublkb$id"
ios=$(ios_done ublkb$id)
fio --name=r --filename=/dev/ublkb$id --rw=randread --bs=4k --iodepth=16 --ioengine=libaio --direct=1 \
	--runtime=60 --time_based > /dev/null 2>&1 &
fio_pid=$!
wait_until 30 ios_past ublkb$id $((ios + 100)) ||
	fail "kill: fio did not get going"
kill -9 "$srv_pid"
wait_until 30 exited "$fio_pid" || fail "kill: fio still runs 30 s after the server died"
wait "$fio_pid" || true
wait_until 10 test ! -e /dev/ublkb$id || fail "kill: /dev/ublkb$id stayed after the server died"
./srv del "$id" 2>>srv.log || fail "kill: DEL failed: $(cat srv.log)"
echo "kill: IO ended, disk removed, device deleted"
echo ok
