#!/bin/bash
# Our own ublk driver (src/kernel/module), its edge cases with servers that misbehave
# (kmod-perm.c is the server):
# - a late NEED_GET_DATA: a user's write timed out before its server asked for the data; the
#   server gets ETIMEDOUT, its commit gives the tag back, the device serves on it again;
# - STOP_DEV and DEL_DEV while a root server holds a request and never answers: they wait,
#   but are killed at once by SIGKILL (no unkillable task, no hung task); once the server is
#   killed the reader's IO ends, the disk goes and a DEL_DEV returns 0;
# - DEL_DEV of a user's device whose server is stuck (never answers, never exits) returns
#   within a bound set by the request timeout;
# - USER_COPY (root): a COMMIT_AND_FETCH while a pread of the same tag copies (it waits in a
#   page fault on a slow device) fails with EBUSY and leaves the request to the server; a
#   second server thread copying the tags the server commits, under fio --verify;
# - lookups racing ADD_DEV: GET_DEV_INFO of an id that is being added and deleted over and over
#   (udev's ublk-owner does this for a uevent that arrives late) must not take a reference on
#   a device ADD_DEV has not finished: no kobject or refcount warning;
# - an id taken by another ADD_DEV while DEL_DEV waits for it: DEL_DEV waits for its own device
#   to be freed, not for the id to be free, so it returns.
# Skips unless the run uses our module (vm-run --driver .../ublk_drv.ko).
# vm-timeout: 600
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"

load_our_driver
build_kmod_perm
head -c 8M /dev/urandom > pattern
ua=4201
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
# PID and every thread of it ended (a zombie left to reap is fine): an io_uring command's
# worker thread stuck in the kernel keeps the process alive though its main thread died
no_live_thread() {
	local s
	for s in /proc/"$1"/task/*/stat; do
		[ -e "$s" ] || continue
		[[ $(awk '{print $3}' "$s" 2> /dev/null) == [ZX]* ]] || return 1
	done
}
hung_tasks() { dmesg | grep -c "blocked for more than" || true; }
kernel_warnings() { dmesg | grep -E 'WARNING:|refcount_t' || true; }
start_stall() { # LOG ARGS...: a kmod-perm stall server; sets $srv (pid) and $id
	local log=$1
	shift
	rm -f id.txt
	./kmod-perm stall "$@" > id.txt 2> "$log" &
	srv=$!
	wait_until 20 test -s id.txt || fail "stall $*: no id: $(cat "$log")"
	id=$(cat id.txt)
	wait_until 20 test -b /dev/ublkb$id || fail "stall $*: no /dev/ublkb$id: $(cat "$log")"
}
tmo=/sys/module/ublk_drv/parameters/unprivileged_io_timeout
old_tmo=$(cat $tmo)
echo 2 > $tmo
defer "echo $old_tmo > $tmo"

# A late NEED_GET_DATA. A user's device with NEED_GET_DATA, 2 s request timeout: the server
# asks for the data of a write at sector 100000 only 8 s after it got it. The write fails
# with the timeout; the late NEED_GET_DATA must get -ETIMEDOUT (the request is gone, no data
# may be copied into it); the commit that follows gives the tag back: 2 MiB requests
# (4 x 512 KiB on a depth of 4) use every tag, the held one too.
start_stall gd.log $ua 64 100000 8 getdata
t0=$(date +%s%N)
if dd if=pattern of=/dev/ublkb$id bs=4k seek=12500 count=1 oflag=direct status=none 2> dd.err; then
	fail "getdata-late: a write whose data the server never took succeeded"
fi
ms=$(ms_since "$t0")
grep -q "holding tag .*(write of sector 100000)" gd.log || fail "getdata-late: the server never held the write: $(cat gd.log)"
(( ms >= 1500 && ms < 7500 )) || fail "getdata-late: the write failed after $ms ms (timeout 2 s, NEED_GET_DATA at 8 s)"
wait_until 20 grep -q "late commit" gd.log || fail "getdata-late: no late commit: $(cat gd.log)"
r=$(sed -n 's/^late NEED_GET_DATA of tag [0-9]*: \(-\{0,1\}[0-9]*\)$/\1/p' gd.log)
[ "$r" = -110 ] || fail "getdata-late: the late NEED_GET_DATA returned '$r', expected -110 (ETIMEDOUT): $(cat gd.log)"
dd if=pattern of=/dev/ublkb$id bs=2M oflag=direct status=none || fail "getdata-late: write after the late commit failed"
cmp <(dd if=/dev/ublkb$id bs=2M count=4 iflag=direct status=none) pattern ||
	fail "getdata-late: read back after the late commit differs"
! grep "^NEED_GET_DATA of tag" gd.log || fail "getdata-late: a NEED_GET_DATA in time failed"
./kmod-perm cmd 0 stop "$id" /dev/ublkc"$id" > /dev/null
kmod_perm_expect 0 0 del "$id" /dev/ublkc"$id"
wait "$srv" || fail "getdata-late: server exit status $?: $(cat gd.log)"
echo "getdata-late: the write failed after $ms ms ($(cat dd.err)); the late NEED_GET_DATA got $r;" \
	"after the commit 8 MiB written and read back on every tag"

# STOP_DEV and DEL_DEV, root's device, its server stuck: it holds a read (sector 100000) and
# never answers nor exits. Root's requests have no timeout, so both wait for the server; they
# must not leave an unkillable task: each ends within 10 s of SIGKILL. The hung task detector
# runs at 15 s meanwhile (nothing here blocks that long). Once the server is killed, the
# reader's IO ends, the disk goes and the DEL_DEV waiting then returns 0.
hung=/proc/sys/kernel/hung_task_timeout_secs
hung0=$(hung_tasks)
if [ -w $hung ]; then
	old_hung=$(cat $hung)
	echo 15 > $hung
	defer "echo $old_hung > $hung"
fi
start_stall stuck.log 0 64 100000 100000
dd if=/dev/ublkb$id of=/dev/null bs=4k skip=12500 count=1 iflag=direct status=none 2> /dev/null &
reader=$!
wait_until 20 grep -q "holding tag" stuck.log || fail "stuck: the server never got the read: $(cat stuck.log)"
for op in stop del; do
	./kmod-perm cmd 0 $op "$id" > $op.out &
	pid=$!
	! wait_until 2 exited "$pid" 2> /dev/null || fail "stuck: $op returned $(cat $op.out) while the server held a read"
	t0=$(date +%s%N)
	kill -9 "$pid"
	wait_until 10 no_live_thread "$pid" ||
		fail "stuck: $op still runs 10 s after SIGKILL: $(grep -h . /proc/"$pid"/task/*/stat 2> /dev/null | awk '{print $2, $3}' | tr '\n' ' ')"
	wait "$pid" 2> /dev/null || true
	echo "stuck: $op waited for the server, ended $(ms_since "$t0") ms after SIGKILL"
done
exited "$reader" && fail "stuck: the reader ended while the server held its read"
exited "$srv" && fail "stuck: the server ended: $(cat stuck.log)"
./kmod-perm cmd 0 del "$id" > del.out &
del_pid=$!
! wait_until 1 exited "$del_pid" 2> /dev/null || fail "stuck: DEL_DEV returned $(cat del.out) before the server died"
t0=$(date +%s%N)
kill -9 "$srv"
wait "$srv" 2> /dev/null || true
wait_until 10 exited "$reader" || fail "stuck: the reader still waits 10 s after the server died"
wait "$reader" 2> /dev/null || true
wait_until 10 test ! -e /dev/ublkb$id || fail "stuck: /dev/ublkb$id stayed after the server died"
wait_until 10 exited "$del_pid" || fail "stuck: DEL_DEV did not return within 10 s of the server's death"
[ "$(cat del.out)" = 0 ] || fail "stuck: DEL_DEV returned '$(cat del.out)'"
[ ! -e /sys/class/ublk-char/ublkc$id ] || fail "stuck: ublkc$id stayed in /sys/class/ublk-char"
[ "$(hung_tasks)" = "$hung0" ] || fail "stuck: hung tasks in the kernel log: $(dmesg | grep -A3 'blocked for more than')"
echo "stuck: server killed; reader ended, disk removed, DEL_DEV returned 0 in $(ms_since "$t0") ms"
[ -n "${old_hung:-}" ] && echo "$old_hung" > $hung

# DEL_DEV of a user's device whose server is stuck: the held read times out (2 s), and the
# server never closes its char device; DEL_DEV must not wait for it longer than the request
# timeout again. The disk and the char device's node go; the server lives on until killed.
start_stall ustuck.log $ua 64 100000 100000
dd if=/dev/ublkb$id of=/dev/null bs=4k skip=12500 count=1 iflag=direct status=none 2> /dev/null &
reader=$!
wait_until 20 grep -q "holding tag" ustuck.log || fail "ustuck: the server never got the read: $(cat ustuck.log)"
t0=$(date +%s%N)
./kmod-perm cmd 0 del "$id" /dev/ublkc"$id" > del.out &
del_pid=$!
wait_until 20 exited "$del_pid" || fail "ustuck: DEL_DEV did not return within 20 s"
ms=$(ms_since "$t0")
[ "$(cat del.out)" = 0 ] || fail "ustuck: DEL_DEV returned '$(cat del.out)'"
(( ms < 12000 )) || fail "ustuck: DEL_DEV took $ms ms (request timeout 2 s)"
wait_until 5 exited "$reader" || fail "ustuck: the reader still waits after DEL_DEV"
wait "$reader" 2> /dev/null && fail "ustuck: the held read succeeded"
[ ! -e /dev/ublkb$id ] || fail "ustuck: /dev/ublkb$id stayed"
[ ! -e /sys/class/ublk-char/ublkc$id ] || fail "ustuck: ublkc$id stayed in /sys/class/ublk-char"
exited "$srv" && fail "ustuck: the server ended, it was to stay stuck: $(cat ustuck.log)"
kill -9 "$srv"
wait "$srv" 2> /dev/null || true
echo "ustuck: DEL_DEV returned 0 after $ms ms with the server stuck (and alive)"

# USER_COPY (root): a COMMIT_AND_FETCH while a pread of the same tag is copying must fail
# with EBUSY, the request staying the server's, or the copy would touch a request that has
# ended. The copy is made to wait: kmod-perm ucrace preads the first write's data into a
# shared mapping of a slow device (a stall server holds the read at sector 100000 for 4 s),
# page faulting; it commits meanwhile, then again after the pread ended (taken: the write
# succeeds with its data).
start_stall slow.log 0 64 100000 4
sid=$id slow=$srv
rm -f id.txt
./kmod-perm ucrace 64 /dev/ublkb$sid 100000 > id.txt 2> uc.log &
uc=$!
wait_until 20 test -s id.txt || fail "ucrace: no id: $(cat uc.log)"
id=$(cat id.txt)
wait_until 20 test -b /dev/ublkb$id || fail "ucrace: no /dev/ublkb$id: $(cat uc.log)"
udevadm settle --timeout=20 > /dev/null 2>&1 || true
dd if=pattern of=/dev/ublkb$id bs=4k count=1 oflag=direct status=none || fail "ucrace: the write failed: $(cat uc.log)"
grep -q "commit during a pread: -16" uc.log || fail "ucrace: a commit while a pread copied was not refused with EBUSY: $(cat uc.log)"
grep -q "^pread: 4096$" uc.log || fail "ucrace: the slow pread: $(cat uc.log)"
grep -q "commit after the pread: 0" uc.log || fail "ucrace: the commit after the pread: $(cat uc.log)"
cmp <(dd if=/dev/ublkb$id bs=4k count=1 iflag=direct status=none) <(head -c 4096 pattern) ||
	fail "ucrace: the write's data differs"
echo "ucrace: $(grep -m1 'commit during' uc.log); $(grep -m1 '^pread' uc.log); $(grep -m1 'commit after' uc.log)"
./kmod-perm cmd 0 stop "$sid" > /dev/null
kmod_perm_expect 0 0 del "$sid"
wait "$slow" || fail "ucrace: the slow server's exit status $?: $(cat slow.log)"

# The same server's second thread copies every tag it holds, over and over, while it commits
# them, under fio --verify (4k-64k random writes, then reads, 3 passes over 16 MiB). No data
# may differ; some commits must have met a copy (EBUSY) for the race to have been run.
fio --name=uc --filename=/dev/ublkb$id --rw=randwrite --bsrange=4k-64k --size=16M --loops=3 \
	--iodepth=16 --ioengine=libaio --direct=1 --verify=crc32c --verify_fatal=1 --do_verify=1 \
	--output-format=json --output=fio-uc.json > /dev/null 2>&1 || fail "ucrace: fio failed: $(head -c 1500 fio-uc.json)"
sed -i '/^{/,$!d' fio-uc.json
jq -e '.jobs[0].error == 0 and .jobs[0].read.total_ios > 0' fio-uc.json > /dev/null ||
	fail "ucrace: fio reported errors: $(head -c 1500 fio-uc.json)"
dd if=pattern of=/dev/ublkb$id bs=1M seek=16 oflag=direct status=none || fail "ucrace: direct write failed"
cmp <(dd if=/dev/ublkb$id bs=128k skip=128 count=64 iflag=direct status=none) pattern ||
	fail "ucrace: read back differs"
./kmod-perm cmd 0 stop "$id" > /dev/null
./kmod-perm cmd 0 del "$id" > del.out &
del_pid=$!
wait_until 30 exited "$del_pid" || fail "ucrace: DEL_DEV did not return within 30 s"
[ "$(cat del.out)" = 0 ] || fail "ucrace: DEL_DEV returned '$(cat del.out)'"
wait_until 10 exited "$uc" || fail "ucrace: the server did not exit: $(tail -3 uc.log)"
wait "$uc" || fail "ucrace: server exit status $?: $(tail -5 uc.log)"
stat=$(grep '^ucrace:' uc.log | tail -1)
ebusy=$(sed -n 's/.* ebusy=\([0-9]*\).*/\1/p' <<< "$stat")
(( ebusy > 0 )) || fail "ucrace: no commit met a copy in progress, the race was not run: $stat"
grep -E "^tag [0-9]+: " uc.log && fail "ucrace: unexpected command results: $(grep -E '^tag ' uc.log | head -3)"
echo "$stat; fio: $(jq '.jobs[0].write.total_ios' fio-uc.json) writes," \
	"$(jq '.jobs[0].read.total_ios' fio-uc.json) verified reads, 0 errors; 8 MiB read back"

# Lookups racing ADD_DEV and DEL_DEV of one id. CI met this once: t-churn's 1000 devices all
# take id 0, udev's ublk-owner looks up the id of an old uevent, and the kernel said
# "kobject_get" of a device not yet initialized. Here three processes do nothing but look the
# id up while it is added and deleted 1500 times; both answers must have come many times.
warn0=$(kernel_warnings | wc -l)
t0=$(date +%s%N)
out=$(timeout $((300 * TIME_FACTOR)) "$UBLKD_BUILD/test/ublk-churn" --lookups 1500 3) ||
	fail "lookups: ublk-churn failed or hung: $out"
found=$(sed -n 's/.* found=\([0-9]*\).*/\1/p' <<< "$out")
absent=$(sed -n 's/.* absent=\([0-9]*\).*/\1/p' <<< "$out")
(( found >= 100 && absent >= 100 )) || fail "lookups: the probers did not race the adds: $out"
warn1=$(kernel_warnings | wc -l)
(( warn1 == warn0 )) || fail "lookups: the kernel warned: $(kernel_warnings | tail -2)"
[ -z "$(ls /sys/class/ublk-char)" ] || fail "lookups: devices left: $(ls /sys/class/ublk-char)"
echo "lookups: $out, $(ms_since "$t0") ms, no kernel warning"

# An id taken again while DEL_DEV waits for it. DEL_DEV returns once its device is freed, so
# that the id can be reused at once; a second process that adds a device with that id as soon
# as it can, and keeps it until that DEL_DEV returns, must not hold the DEL_DEV with it.
t0=$(date +%s%N)
out=$(timeout $((300 * TIME_FACTOR)) "$UBLKD_BUILD/test/ublk-churn" --reuse 500) ||
	fail "reuse: ublk-churn failed or hung: $out"
raced=$(sed -n 's/.* raced=\([0-9]*\).*/\1/p' <<< "$out")
(( raced >= 5 )) || fail "reuse: the id was seldom taken while DEL_DEV waited, nothing was raced: $out"
[ -z "$(ls /sys/class/ublk-char)" ] || fail "reuse: devices left: $(ls /sys/class/ublk-char)"
echo "reuse: $out, $(ms_since "$t0") ms"
echo ok
