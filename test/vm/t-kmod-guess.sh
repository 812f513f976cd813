#!/bin/bash
# Our own ublk driver (src/kernel/module) refuses a server's answers for tags it was not given,
# and nothing hangs when that server is killed. Until a request's dispatch has run in the
# server's task the server has not been told of it; a COMMIT_AND_FETCH guessing its tag (with
# USER_COPY also pread/pwrite) must fail with EINVAL. Were the commit taken, the dispatch would
# then park the old command over the new one, which never completes: the server could not exit,
# nor its char device be released, nor DEL_DEV return. kmod-perm guess guesses every tag between
# its waits, from a DEFER_TASKRUN ring (the dispatches run only while it waits), under a direct
# randrw reader, until it has guessed 200 times at tags with a dispatch pending (requests in
# flight while it held none). Then it is killed: the reader's IO ends, the server exits, the
# disk goes, DEL_DEV returns, each within a bound. Once on a user's device (copy mode, 2 s
# request timeout), once on root's with USER_COPY.
# Skips unless the run uses our module (vm-run --driver .../ublk_drv.ko).
# vm-timeout: 240
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
. "$UBLKD_SRC/test/vm/kmod-lib.sh"

kmod_start
build_kmod_perm
set_param unprivileged_io_timeout 2

guess_stat() { sed -n "s/^guess:.* $1=\([0-9]*\).*/\1/p" guess.log | tail -1; }
guess_enough() { grep -q ACCEPTED guess.log || [ "$(guess_stat pending)" -ge 200 ] 2> /dev/null; }
for how in "$ua copy" "0 usercopy"; do
	read -r uid mode <<< "$how"
	rm -f id.txt
	./kmod-perm guess "$uid" 64 "$mode" > id.txt 2> guess.log &
	guess_pid=$!
	wait_until 20 test -s id.txt || fail "guess ($mode): no id: $(cat guess.log)"
	id=$(cat id.txt)
	wait_until 20 test -b /dev/ublkb$id || fail "guess ($mode): no /dev/ublkb$id: $(cat guess.log)"
	path=
	[ "$uid" = 0 ] || path=/dev/ublkc$id
	fio --name=g --filename=/dev/ublkb$id --rw=randrw --bs=4k --iodepth=32 --ioengine=libaio \
		--direct=1 --runtime=120 --time_based > /dev/null 2>&1 &
	fio_pid=$!
	wait_until 60 guess_enough ||
		fail "guess ($mode): fewer than 200 guesses with a dispatch pending in 60 s: $(tail -3 guess.log)"
	exited "$guess_pid" && fail "guess ($mode): the server ended: $(tail -5 guess.log)"
	kill -9 "$guess_pid"
	problems=()
	if grep -q ACCEPTED guess.log; then
		problems+=("guesses were taken: $(grep -m 3 ACCEPTED guess.log | tr '\n' ' ')")
	else
		stat=$(grep '^guess:' guess.log | tail -1)
		[ "$(guess_stat early)" = "$(guess_stat refused)" ] || problems+=("not every guess got EINVAL: $stat")
	fi
	wait_until 30 exited "$guess_pid" || problems+=("the server did not exit within 30 s of SIGKILL")
	wait "$guess_pid" 2> /dev/null || true
	wait_until 30 exited "$fio_pid" || problems+=("the reader still ran 30 s after the server's death")
	wait "$fio_pid" || true
	wait_until 10 test ! -e /dev/ublkb$id || problems+=("/dev/ublkb$id stayed after the server's death")
	./kmod-perm cmd 0 del "$id" $path > del.out &
	del_pid=$!
	wait_until 30 exited "$del_pid" || problems+=("DEL_DEV did not return within 30 s")
	[ "$(cat del.out)" = 0 ] || problems+=("DEL_DEV: '$(cat del.out)'")
	(( ${#problems[@]} == 0 )) || fail "guess ($mode): ${problems[*]}"
	echo "guess ($mode): $stat; after SIGKILL the IO ended, the server exited, DEL_DEV returned"
done
echo ok
