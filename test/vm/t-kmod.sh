#!/bin/bash
# Our own ublk driver (src/kernel/module): it loads in place of the in-tree
# one, answers GET_FEATURES, serves a device to ublkd, survives the server
# being killed mid-IO (the IO ends, nothing hangs), takes plugged batches of
# requests in one go (6.12, ublk_queue_rqs()), moves data right in each
# copy mode ublkd does not use (NEED_GET_DATA, USER_COPY; kmod-srv.c, a
# RAM-disk server compiled here, talks to the driver directly, and also serves
# one queue from two rings and from two processes on one ring, whose requests
# the batched dispatch must keep apart), checks who may command unprivileged devices, the limit on their number and
# their request timeout (kmod-perm.c), refuses a server's answers for tags it
# was not given (and nothing hangs when that server is killed), recovers a
# device whose server was killed under a verifying fio
# (USER_RECOVERY_REISSUE, and FAIL_IO), and unloads, also with devices that
# wait for a server. Servers that stall, get stuck or race their own copies:
# t-kmod-edge.sh.
# Skips unless the run uses our module (vm-run --driver .../ublk_drv.ko).
# vm-timeout: 840
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"

load_our_driver
[ -c /dev/ublk-control ] || fail "no /dev/ublk-control"
grep -q "ublk-char" /proc/devices || fail "no ublk-char major in /proc/devices"
install_ublkd
systemctl start ublkd
# whatever happens, the next test finds no device of ours
# (only while ublkd runs: a bus call would start it, and its unit modprobes ublk_drv)
defer "systemctl -q is-active ublkd && ublkctl del kmod >/dev/null 2>&1; systemctl stop ublkd"

features=$(ublkctl features)
echo "features: $features"
ublkctl --json features >/dev/null 2>&1 || true

# A device, written and read back through the page cache and O_DIRECT.
# Without recovery (ublkd's default is reissue): the server's death stops it.
dev=$(ublkctl add null --size 256M --name kmod --recovery none)
[[ $dev =~ ^/dev/ublkb([0-9]+)$ ]] || fail "ublkctl add printed '$dev'"
id=${BASH_REMATCH[1]}
[ "$(blockdev --getsize64 "$dev")" = 268435456 ] || fail "wrong size"
dd if="$dev" of=/dev/null bs=1M count=64 iflag=direct status=none || fail "direct read failed"
dd if=/dev/zero of="$dev" bs=1M count=16 oflag=direct status=none || fail "direct write failed"
# O_DIRECT needs only 4-byte aligned buffers, as with the in-tree driver (dma_alignment 3)
[ "$(cat /sys/block/ublkb$id/queue/dma_alignment)" = 3 ] ||
	fail "dma_alignment $(cat /sys/block/ublkb$id/queue/dma_alignment), in-tree has 3"
python3 - "$dev" <<'PY' || fail "O_DIRECT read into a buffer 4 bytes past a page failed"
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 2 * 4096)
assert os.preadv(fd, [memoryview(buf)[4:4 + 4096]], 0) == 4096
PY

# The server dies with IO in flight: the reader must end, with or without an
# error, and the kernel must stop the disk.
fio --name=r --filename="$dev" --rw=randread --bs=4k --iodepth=32 --ioengine=io_uring --direct=1 \
	--runtime=60 --time_based --output-format=json > fio.json 2>/dev/null &
fio_pid=$!
wait_until 30 sh -c "grep -q ublkb$id /proc/diskstats && [ \$(awk '\$3==\"ublkb$id\"{print \$4}' /proc/diskstats) -gt 100 ]" ||
	fail "fio did not get going"
pid=$(systemctl show -P MainPID ublkd)
kill -9 "$pid"
wait_until 30 exited "$fio_pid" || fail "fio still runs 30 s after the server died"
wait "$fio_pid" || true
echo "fio after the kill: error=$(jq '.jobs[0].error' fio.json 2>/dev/null || echo '?')"

# systemd restarts ublkd, which renews the device the kernel stopped; it
# serves again once started.
wait_until 30 sh -c "ublkctl --json list | jq -e '.[] | select(.Name == \"kmod\")' >/dev/null" ||
	fail "ublkd did not come back with the device: $(ublkctl list 2>&1)"
ublkctl list
ublkctl start kmod >/dev/null 2>&1 || true
wait_until 30 sh -c "ublkctl --json list | jq -e '.[] | select(.Name == \"kmod\" and .State == \"live\")' >/dev/null" ||
	fail "device not live again: $(ublkctl list 2>&1)"
wait_until 10 test -b "$dev" || fail "no $dev after the restart"
dd if="$dev" of=/dev/null bs=1M count=8 iflag=direct status=none || fail "read after restart failed"
ublkctl del kmod
wait_until 10 test ! -e "$dev" || fail "$dev still exists after del"

# Plugged batches (6.12): fio hands io_uring 16 IOs at a time, blk-mq passes each plug's
# requests to ublk_queue_rqs(), which hands a queue's run of them to the server in one go.
# Data verified on a 2-queue loop device; a kprobe counts the calls, which must carry more
# than 2 requests each on average, or this says nothing about batches.
if [ "$UBLKD_VM_KERNEL" != 6.1 ]; then
	mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
	tr=/sys/kernel/tracing
	echo 'p:kmod_qrqs ublk_drv:ublk_queue_rqs' >> $tr/kprobe_events ||
		fail "batches: no kprobe on ublk_queue_rqs"
	defer "echo 0 > $tr/events/kprobes/kmod_qrqs/enable; echo '-:kmod_qrqs' >> $tr/kprobe_events; echo 1 > $tr/tracing_on"
	echo 0 > $tr/tracing_on
	echo 1 > $tr/events/kprobes/kmod_qrqs/enable
	truncate -s 64M /dev/shm/kmod-batch.img
	defer "rm -f /dev/shm/kmod-batch.img"
	bdev=$(ublkctl add loop /dev/shm/kmod-batch.img --queues 2 --name kmodbatch)
	wait_until 10 test -b "$bdev" || fail "batches: no $bdev"
	ios_before=$(ios_done "${bdev#/dev/}")
	fio --name=b --filename="$bdev" --rw=randwrite --bs=4k --iodepth=32 --iodepth_batch_submit=16 \
		--iodepth_batch_complete_min=16 --numjobs=2 --size=16M --offset_increment=32M \
		--ioengine=io_uring --direct=1 --verify=crc32c --verify_fatal=1 --group_reporting \
		--output-format=json --output=fio-batch.json > /dev/null 2>&1 ||
		fail "batches: verifying fio failed: $(head -c 1500 fio-batch.json)"
	sed -i '/^{/,$!d' fio-batch.json
	jq -e '.jobs[0].error == 0 and .jobs[0].read.total_ios > 0' fio-batch.json > /dev/null ||
		fail "batches: fio reported errors: $(head -c 1500 fio-batch.json)"
	ios=$(( $(ios_done "${bdev#/dev/}") - ios_before ))
	calls=$(awk '$1 == "kmod_qrqs" {print $2}' $tr/kprobe_profile)
	[ "${calls:-0}" -gt 0 ] && [ "$ios" -gt $(( 2 * calls )) ] ||
		fail "batches: $ios requests in ${calls:-no} ublk_queue_rqs() calls"
	echo "batches: $ios requests verified, $calls ublk_queue_rqs() calls ($(( ios / calls )) requests each)"
	ublkctl del kmodbatch
fi

# Copy mode's buffers stay pinned between IOs (pins.c). A verifying fio on a root's loop
# device, first with pin_cache=N: the copy that pins per IO (ublk_copy_user, counted by a
# kprobe) runs once per IO, and no pin outlives its IO (pins taken less pins released, from
# /proc/vmstat, back where they were). Then with pin_cache=Y: it runs for under 1 IO in 8
# (a tag's first copies), the pins stay while the device is served, and go with the device.
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
tr=/sys/kernel/tracing
echo 'p:kmod_copy ublk_drv:ublk_copy_user' >> $tr/kprobe_events || fail "pins: no kprobe on ublk_copy_user"
defer "echo 0 > $tr/events/kprobes/kmod_copy/enable; echo '-:kmod_copy' >> $tr/kprobe_events; echo 1 > $tr/tracing_on; echo Y > /sys/module/ublk_drv/parameters/pin_cache"
echo 0 > $tr/tracing_on
echo 1 > $tr/events/kprobes/kmod_copy/enable
# pins_held: user pages pinned now (FOLL_PIN), per-CPU counts folded in first
pins_held() {
	echo 1 > /proc/sys/vm/stat_refresh
	awk '$1 == "nr_foll_pin_acquired" {a = $2} $1 == "nr_foll_pin_released" {r = $2} END {print a - r}' /proc/vmstat
}
pins_back_to() { [ "$(pins_held)" -le "$1" ]; }
# pins_fio SETTING: the verifying fio with pin_cache=SETTING; sets $pin_ios and $pin_calls
pins_fio() {
	local ios0 calls0

	echo "$1" > /sys/module/ublk_drv/parameters/pin_cache || fail "pins: cannot set pin_cache=$1"
	ios0=$(ios_done "${pdev#/dev/}")
	calls0=$(awk '$1 == "kmod_copy" {print $2}' $tr/kprobe_profile)
	fio --name=p --filename="$pdev" --rw=randwrite --bs=16k --iodepth=16 --size=32M \
		--ioengine=io_uring --direct=1 --verify=crc32c --verify_fatal=1 > "fio-pins-$1.log" 2>&1 ||
		fail "pins: verifying fio with pin_cache=$1 failed: $(grep -m 3 -i 'verify\|crc\|err' "fio-pins-$1.log")"
	pin_ios=$(( $(ios_done "${pdev#/dev/}") - ios0 ))
	pin_calls=$(( $(awk '$1 == "kmod_copy" {print $2}' $tr/kprobe_profile) - calls0 ))
}
truncate -s 64M /dev/shm/kmod-pins.img
defer "rm -f /dev/shm/kmod-pins.img"
pins0=$(pins_held)
pdev=$(ublkctl add loop /dev/shm/kmod-pins.img --name kmodpins)
wait_until 10 test -b "$pdev" || fail "pins: no $pdev"
pins_fio N
[ "$pin_calls" -ge $(( pin_ios - pin_ios / 10 )) ] ||
	fail "pins: with pin_cache=N, $pin_calls pinning copies for $pin_ios IOs (the probe misses them?)"
wait_until 10 pins_back_to "$pins0" || fail "pins: with pin_cache=N, $(( $(pins_held) - pins0 )) pins outlive their IOs"
echo "pins: pin_cache=N: $pin_ios IOs verified, $pin_calls copies pinned per IO, none kept"
pins_fio Y
pins_kept=$(( $(pins_held) - pins0 ))
[ $(( 8 * pin_calls )) -lt "$pin_ios" ] ||
	fail "pins: with pin_cache=Y, $pin_calls copies pinned per IO for $pin_ios IOs"
[ "$pins_kept" -gt 0 ] || fail "pins: with pin_cache=Y, no pins kept while the device is served"
ublkctl del kmodpins || fail "pins: del failed"
wait_until 10 pins_back_to "$pins0" ||
	fail "pins: $(( $(pins_held) - pins0 )) pins left after the device's deletion (of $pins_kept kept)"
echo "pins: pin_cache=Y: $pin_ios IOs verified, $pin_calls copies pinned per IO, $pins_kept pages kept, released at del"
systemctl stop ublkd

# The driver's other copy modes, with a server of our own.
require_cmd gcc
gcc -O2 -w -I"$UBLKD_SRC/src/kernel/uapi" -I"$UBLKD_SRC/test/vm" "$UBLKD_SRC/test/vm/kmod-srv.c" -o srv \
	-luring -lpthread || fail "cannot build the test server (kmod-srv.c)"

# start_srv MODE: ./srv MODE 64 in the background; sets $srv_pid and $id.
start_srv() {
	./srv "$1" 64 > id.txt 2> srv.log &
	srv_pid=$!
	wait_until 20 test -s id.txt || fail "$1: the server printed no id: $(cat srv.log)"
	id=$(cat id.txt)
}

# Every mode: no page the driver pinned outlives the server (pins counted as above). shift
# moves each tag's buffer within its first page after two requests, so that a full IO (16 KiB
# there) spans one page more than where the driver began keeping the buffer's pages: a driver
# that sized the window it watches and unpins from the first offset kept that page pinned
# (8 pins, one per tag, left after the server's exit).
head -c 8M /dev/urandom > pattern
for mode in copy getdata usercopy splice remap shift; do
	mpins0=$(pins_held)
	start_srv $mode
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
start_srv tworings
split_serve tworings ring

# One queue's tags fetched on one ring by two processes: the even tags by the server, the odd
# ones by a child it forked, in its own mm. On 6.12 a batch on the parent's task work may list
# a request whose command is the child's: its data must be copied in the child's task, or the
# child serves what its buffer held before and the verifying fio fails. 6.1 takes a queue's
# commands from one task only (compat.h): the child's FETCH_REQ fails with EINVAL.
start_srv twotasks
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

# The server killed with reads in flight: they end, the disk goes, DEL works.
start_srv copy
wait_until 20 test -b /dev/ublkb$id || fail "kill: no /dev/ublkb$id"
fio --name=r --filename=/dev/ublkb$id --rw=randread --bs=4k --iodepth=16 --ioengine=libaio --direct=1 \
	--runtime=60 --time_based > /dev/null 2>&1 &
fio_pid=$!
wait_until 30 sh -c "[ \$(awk '\$3==\"ublkb$id\"{print \$4}' /proc/diskstats) -gt 100 ]" ||
	fail "kill: fio did not get going"
kill -9 "$srv_pid"
wait_until 30 exited "$fio_pid" || fail "kill: fio still runs 30 s after the server died"
wait "$fio_pid" || true
wait_until 10 test ! -e /dev/ublkb$id || fail "kill: /dev/ublkb$id stayed after the server died"
./srv del "$id" 2>>srv.log || fail "kill: DEL failed: $(cat srv.log)"
echo "kill: IO ended, disk removed, device deleted"

# Unprivileged devices (UBLK_F_UNPRIVILEGED_DEV): who may send which command. kmod-perm opens
# /dev/ublk-control as root, then drops to the uid given (as ublkd's user threads do) and prints
# the command's result (0 or -errno). Users ua, ub: numeric ids without accounts.
build_kmod_perm
ua=4201 ub=4202
EPERM=-1 ENOENT=-2 EACCES=-13 EINVAL=-22
add_as() { # UID [noflag|usercopy]: prints "ID FLAGS OWNER" or -errno
	./kmod-perm add "$@" || fail "kmod-perm add $*: exit $?"
}
# A user's own server needs its device's char node: ublkd's udev rules keep every /dev/ublkcN
# root's (ublkd is the server of users' devices), so the test gives it, as a standalone
# server's own rule would, once udev has handled the node's add event (which sets root 0600).
# ublk-owner (udev) gives a user's block node to the user
owned_by() { [ "$(stat -c %u "$1" 2>/dev/null)" = "$2" ]; }
give_node() { # ID UID
	udevadm settle --timeout=20 > /dev/null 2>&1 || true
	chown "$2:$2" /dev/ublkc"$1" || fail "chown of /dev/ublkc$1 to $2"
	[ "$(stat -c '%u %a' /dev/ublkc"$1")" = "$2 600" ] || fail "/dev/ublkc$1: $(stat -c '%u %a' /dev/ublkc"$1")"
}
(( features & 0x20 )) || fail "GET_FEATURES does not advertise UBLK_F_UNPRIVILEGED_DEV: $features"

read -r rid rflags _ <<< "$(add_as 0)"
[[ $rid =~ ^[0-9]+$ ]] || fail "root's ADD_DEV: $rid"
(( (rflags & 0x20) == 0 )) || fail "root asked for an unprivileged device and got one ($rflags)"
for op in info params stop del; do kmod_perm_expect $EPERM $ua $op "$rid"; done
kmod_perm_expect $EPERM $ua info2 "$rid" /dev/ublkc"$rid"
kmod_perm_expect 0 0 info2 "$rid" /dev/ublkc"$rid"
kmod_perm_expect $EINVAL 0 info2 "$rid"
kmod_perm_expect 0 0 info "$rid"
echo "root's device $rid: a user gets EPERM for info, info2 (with its path), params, stop, del"

# ADD_DEV negotiates flags as upstream does: those of newer kernels (AUTO_BUF_REG,
# PER_IO_DAEMON, bit 40) are cleared, not refused; CMD_IOCTL_ENCODE and URING_CMD_COMP_IN_TASK
# come back though not asked for; USER_COPY clears NEED_GET_DATA. 6.12's in-tree driver
# answers the same request with the same flags, 0xc2.
read -r nid nflags _ <<< "$(add_as 0 negotiate)"
[[ $nid =~ ^[0-9]+$ ]] || fail "ADD_DEV refused flags of newer kernels ($nid): the in-tree driver clears them"
[ "$nflags" = 0xc2 ] || fail "ADD_DEV negotiated flags $nflags, not 0xc2 (IOCTL_ENCODE, COMP_IN_TASK, USER_COPY)"
kmod_perm_expect 0 0 del "$nid"
echo "ADD_DEV with flags of newer kernels: cleared, device $nid has flags $nflags"

r=$(add_as $ua noflag); [ "$r" = $EPERM ] || fail "a user's ADD_DEV without UBLK_F_UNPRIVILEGED_DEV: $r"
r=$(add_as $ua usercopy); [ "$r" = $EINVAL ] || fail "a user's ADD_DEV with UBLK_F_USER_COPY: $r"
read -r a aflags aowner <<< "$(add_as $ua)"
[[ $a =~ ^[0-9]+$ ]] || fail "ua's ADD_DEV: $a"
(( aflags & 0x20 )) && [ "$aowner" = $ua ] || fail "ua's device: flags $aflags owner $aowner"
read -r a2 _ <<< "$(add_as $ua)"
read -r b _ <<< "$(add_as $ub)"
[[ $a2 =~ ^[0-9]+$ && $b =~ ^[0-9]+$ ]] || fail "more user devices: $a2 $b"
for d in "$a:$ua" "$a2:$ua" "$b:$ub"; do
	give_node "${d%:*}" "${d#*:}"
done
kmod_perm_expect 0 $ua info "$a" /dev/ublkc"$a"
kmod_perm_expect 0 $ua info2 "$a" /dev/ublkc"$a"
kmod_perm_expect 0 $ua setparams "$a" /dev/ublkc"$a"
kmod_perm_expect 0 $ua params "$a" /dev/ublkc"$a"
# limits the block layer WARNs about (a user could make the kernel log a WARN at START_DEV)
kmod_perm_expect $EINVAL $ua setparams-small-io "$a" /dev/ublkc"$a"
kmod_perm_expect $EINVAL $ua setparams-dma-8k "$a" /dev/ublkc"$a"
kmod_perm_expect $EINVAL $ua info "$a"
kmod_perm_expect $EINVAL 0 stop "$a"
kmod_perm_expect 0 0 info "$a" /dev/ublkc"$a"
echo "ua's device $a: ua's commands carry its node's path; without one EINVAL, for root too; IO limits under a page refused"
for op in info stop del; do kmod_perm_expect $EACCES $ub $op "$a" /dev/ublkc"$a"; done
kmod_perm_expect $EPERM $ub del "$a" /dev/ublkc"$b"
kmod_perm_expect $EPERM $ua stop "$a" /dev/ublkc"$a2"
kmod_perm_expect $EPERM $ua stop "$a" /dev/null
kmod_perm_expect $EPERM $ua stop "$a" /dev/ublk-control
kmod_perm_expect $ENOENT $ua stop "$a" /dev/ublkc-none
echo "ub on ua's device: EACCES through its node, EPERM through ub's own node; a path to another device EPERM"

limit=/sys/module/ublk_drv/parameters/unprivileged_ublks_max
old_limit=$(cat $limit)
echo 3 > $limit
defer "echo $old_limit > $limit"
r=$(add_as $ub); [ "$r" = $EACCES ] || fail "a fourth user device with unprivileged_ublks_max=3: $r"
read -r r2 _ <<< "$(add_as 0)"
[[ $r2 =~ ^[0-9]+$ ]] || fail "root's device refused at the user limit: $r2"
kmod_perm_expect 0 $ua del "$a2" /dev/ublkc"$a2"
read -r b2 _ <<< "$(add_as $ub)"
[[ $b2 =~ ^[0-9]+$ ]] || fail "a user device refused after one was deleted: $b2"
echo "unprivileged_ublks_max=3: the fourth EACCES, root's not counted, a delete makes room"
kmod_perm_expect 0 $ua del "$a" /dev/ublkc"$a"
kmod_perm_expect 0 $ub del "$b" /dev/ublkc"$b"
kmod_perm_expect 0 0 del "$b2" /dev/ublkc"$b2"
kmod_perm_expect 0 0 del "$rid"
kmod_perm_expect 0 0 del "$r2"

# DEL_DEV counts a user's device down, as upstream does, also while its char device is held
# open (by a server that does not close it: DEL_DEV then returns after the device's request
# timeout, 1 s here, with the id still taken): three such devices deleted, three more fit under
# unprivileged_ublks_max=3. Counted until freed instead, the fourth ADD_DEV failed with EACCES.
tmo=/sys/module/ublk_drv/parameters/unprivileged_io_timeout
old_tmo=$(cat $tmo)
echo 1 > $tmo
held=() holders=()
for u in $ua $ua $ub; do
	read -r d _ <<< "$(add_as $u)"
	[[ $d =~ ^[0-9]+$ ]] || fail "held: ADD_DEV as $u: $d"
	held+=("$d")
done
r=$(add_as $ub); [ "$r" = $EACCES ] || fail "held: a fourth user device with unprivileged_ublks_max=3: $r"
for d in "${held[@]}"; do
	sleep 600 < /dev/ublkc"$d" &
	holders+=($!)
	wait_until 10 sh -c "readlink /proc/$!/fd/0 | grep -qx /dev/ublkc$d" || fail "held: /dev/ublkc$d not held"
done
for d in "${held[@]}"; do kmod_perm_expect 0 0 del "$d" /dev/ublkc"$d"; done
again=()
for u in $ua $ub $ub; do
	read -r d _ <<< "$(add_as $u)"
	[[ $d =~ ^[0-9]+$ ]] || fail "held: ADD_DEV as $u after DEL_DEV of 3 devices whose char device is held: $d"
	again+=("$d")
done
echo "held: 3 user devices deleted while their char devices were held (ids ${held[*]} still taken), 3 more added (${again[*]})"
kill "${holders[@]}"
wait "${holders[@]}" 2>/dev/null || true
for d in "${again[@]}"; do kmod_perm_expect 0 0 del "$d" /dev/ublkc"$d"; done
echo "$old_tmo" > $tmo

# A user's server that does not answer: the request fails after unprivileged_io_timeout,
# the server's late answer gives the tag back, and the device serves on every tag.
echo 2 > $tmo
defer "echo $old_tmo > $tmo"
./kmod-perm stall $ua 64 100000 10 > id.txt 2> stall.log &
stall_pid=$!
wait_until 20 test -s id.txt || fail "stall: no id: $(cat stall.log)"
id=$(cat id.txt)
wait_until 20 test -b /dev/ublkb$id || fail "stall: no /dev/ublkb$id: $(cat stall.log)"
# A user's disk opens for its owner (uid and gid) and root only, as upstream (EPERM), even
# where the node's mode lets others in (its owner could chmod it).
bd_open() { # UID GID: opens /dev/ublkb$id read-only as UID:GID, prints 0 or -errno
	setpriv --reuid="$1" --regid="$2" --clear-groups python3 -c '
import os, sys
try:
    os.close(os.open(sys.argv[1], os.O_RDONLY))
    print(0)
except OSError as e:
    print(-e.errno)' /dev/ublkb$id
}
wait_until 10 owned_by /dev/ublkb$id $ua || fail "stall: /dev/ublkb$id not given to $ua"
chmod 0666 /dev/ublkb$id
opens="owner $(bd_open $ua $ua), other user $(bd_open $ub $ub), owner's uid with another gid $(bd_open $ua $ub), root $(bd_open 0 0)"
[ "$opens" = "owner 0, other user $EPERM, owner's uid with another gid $EPERM, root 0" ] ||
	fail "stall: opens of a user's disk (mode 0666): $opens"
echo "stall: opens of ua's /dev/ublkb$id (mode 0666): $opens"
t0=$(date +%s%N)
if dd if=/dev/ublkb$id of=/dev/null bs=4k skip=12500 count=1 iflag=direct status=none 2> dd.err; then
	fail "stall: a read the server held succeeded"
fi
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q "holding tag" stall.log || fail "stall: the server never saw the read: $(cat stall.log)"
(( ms >= 1500 && ms < 9000 )) || fail "stall: the held read failed after $ms ms (timeout 2 s, late answer at 10 s)"
echo "stall: the held read failed after $ms ms: $(cat dd.err)"
wait_until 20 grep -q "late commit" stall.log || fail "stall: no late commit: $(cat stall.log)"
dd if=pattern of=/dev/ublkb$id bs=2M oflag=direct status=none || fail "stall: write after the late commit failed"
cmp <(dd if=/dev/ublkb$id bs=2M count=4 iflag=direct status=none) pattern ||
	fail "stall: read back after the late commit differs"
./kmod-perm cmd 0 stop "$id" /dev/ublkc"$id" > /dev/null
kmod_perm_expect 0 0 del "$id" /dev/ublkc"$id"
wait "$stall_pid" || fail "stall: server exit status $?: $(cat stall.log)"
echo "stall: after the late answer 8 MiB written and read back in 2 MiB requests (4 x 512 KiB, depth 4)"

# A server that answers tags it was not given. Until a request's dispatch has run in the
# server's task the server has not been told of it; a COMMIT_AND_FETCH guessing its tag (with
# USER_COPY also pread/pwrite) must fail with EINVAL. Were the commit taken, the dispatch would
# then park the old command over the new one, which never completes: the server could not exit,
# nor its char device be released, nor DEL_DEV return. kmod-perm guess guesses every tag between
# its waits, from a DEFER_TASKRUN ring (the dispatches run only while it waits), under a direct
# randrw reader, until it has guessed 200 times at tags with a dispatch pending (requests in
# flight while it held none). Then it is killed: the reader's IO ends, the server exits, the
# disk goes, DEL_DEV returns, each within a bound. Once on a user's device (copy mode, 2 s
# request timeout from above), once on root's with USER_COPY.
guess_stat() { sed -n "s/^guess:.* $1=\([0-9]*\).*/\1/p" guess.log | tail -1; }
guess_enough() { grep -q ACCEPTED guess.log || [ "$(guess_stat pending)" -ge 200 ] 2> /dev/null; }
for how in "$ua copy" "0 usercopy"; do
	read -r uid mode <<< "$how"
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

# USER_RECOVERY_REISSUE: the server is SIGKILLed under a verifying fio. The disk stays,
# quiesced, and IO waits; a server that dies between START and END_USER_RECOVERY leaves it
# recoverable; the next one recovers it, fio ends with no error and the held read with the
# data. Then STOP/DEL of a quiesced device with a read waiting: the read fails, nothing hangs.
state() { ./srv info "$1" | sed -n 's/^id=[0-9/]* state=\([0-9]*\)\/.*/\1/p'; }
state_is() { [ "$(state "$1")" = "$2" ]; }
ram=/dev/shm/kmod-ram
rm -f $ram $ram.f $ram.p
defer "rm -f $ram $ram.f $ram.p"
./srv copy 64 reissue $ram > id.txt 2> srv.log &
srv_pid=$!
wait_until 20 test -s id.txt || fail "recovery: no id: $(cat srv.log)"
id=$(cat id.txt)
wait_until 20 test -b /dev/ublkb$id || fail "recovery: no /dev/ublkb$id"
head -c 4096 /dev/urandom > block0
dd if=block0 of=/dev/ublkb$id bs=4k oflag=direct status=none
fio --name=v --filename=/dev/ublkb$id --offset=1M --size=32M --rw=randwrite --bsrange=4k-64k \
	--iodepth=16 --ioengine=libaio --direct=1 --verify=crc32c --verify_fatal=1 \
	--output-format=json --output=fio-rec.json > /dev/null 2>&1 &
fio_pid=$!
wait_until 30 sh -c "[ \$(awk '\$3==\"ublkb$id\"{print \$8}' /proc/diskstats) -gt 200 ]" ||
	fail "recovery: fio did not get going"
kill -9 "$srv_pid"
wait "$srv_pid" 2> /dev/null || true
wait_until 10 state_is "$id" 2 || fail "recovery: state $(state "$id"), not quiesced (2), after the kill"
[ -b /dev/ublkb$id ] || fail "recovery: /dev/ublkb$id went away with its server"
dd if=/dev/ublkb$id of=held.out bs=4k count=1 iflag=direct status=none &
held=$!
before=$(ios_done ublkb$id)
! wait_until 3 exited "$held" 2> /dev/null || fail "recovery: a read with no server did not wait"
exited "$fio_pid" && fail "recovery: fio ended while the device had no server: $(head -c 800 fio-rec.json)"
./srv recover "$id" $ram die 2> srv-die.log || fail "recovery: a server that dies: $(cat srv-die.log)"
wait_until 10 state_is "$id" 2 || fail "recovery: state $(state "$id") after a server died in recovery"
[ "$(ios_done ublkb$id)" = "$before" ] || fail "recovery: IO completed while no server served it"
./srv recover "$id" $ram > /dev/null 2> srv.log &
srv_pid=$!
wait_until 30 exited "$held" || fail "recovery: the held read still waits after the recovery: $(cat srv.log)"
wait "$held" || fail "recovery: the held read failed"
cmp held.out block0 || fail "recovery: the held read returned other data"
wait_until 120 exited "$fio_pid" || fail "recovery: fio still runs 120 s after the recovery"
wait "$fio_pid" || fail "recovery: fio failed: $(head -c 1500 fio-rec.json)"
sed -i '/^{/,$!d' fio-rec.json
jq -e '.jobs[0].error == 0 and .jobs[0].read.total_ios > 0' fio-rec.json > /dev/null ||
	fail "recovery: fio reported errors: $(head -c 1500 fio-rec.json)"
state_is "$id" 1 || fail "recovery: state $(state "$id") after END_USER_RECOVERY"
grep -q "END_USER_RECOVERY: 0" srv.log || fail "recovery: $(cat srv.log)"
echo "recovery: SIGKILL under fio --verify; IO waited; a server that died in recovery left it recoverable;" \
	"recovered: $(jq '.jobs[0].write.total_ios' fio-rec.json) writes verified, 0 errors"
kill -9 "$srv_pid"
wait "$srv_pid" 2> /dev/null || true
wait_until 10 state_is "$id" 2 || fail "recovery: not quiesced after the second kill"
dd if=/dev/ublkb$id of=held2.out bs=4k count=1 iflag=direct status=none 2> /dev/null &
held=$!
# Time for dd to get its read queued: one that comes after the STOP finds a disk of size 0
# and ends with no data and no error (seen once on 6.1 under TCG, when this waited for nothing).
! wait_until 2 exited "$held" 2> /dev/null || fail "recovery: a read with no server did not wait (2)"
./srv del "$id" 2> srv-del.log || fail "recovery: STOP/DEL of a quiesced device: $(cat srv-del.log)"
wait_until 10 exited "$held" || fail "recovery: a read held by a stopped device still waits"
wait "$held" && fail "recovery: a read held by a stopped device succeeded ($(stat -c %s held2.out) bytes)"
[ ! -e /dev/ublkb$id ] || fail "recovery: /dev/ublkb$id stayed after DEL"
echo "recovery: STOP/DEL of a quiesced device failed the waiting read"

# FAIL_IO: with no server IO fails at once, the device stays; a new server recovers it.
./srv copy 16 failio $ram.f > id.txt 2> srv.log &
srv_pid=$!
wait_until 20 test -s id.txt || fail "fail-io: no id: $(cat srv.log)"
fid=$(cat id.txt)
wait_until 20 test -b /dev/ublkb$fid || fail "fail-io: no /dev/ublkb$fid"
dd if=block0 of=/dev/ublkb$fid bs=4k oflag=direct status=none
kill -9 "$srv_pid"
wait "$srv_pid" 2> /dev/null || true
wait_until 10 state_is "$fid" 3 || fail "fail-io: state $(state "$fid"), not fail-io (3)"
timeout 10 dd if=/dev/ublkb$fid of=/dev/null bs=4k count=1 iflag=direct status=none 2> /dev/null &&
	fail "fail-io: a read with no server succeeded"
./srv recover "$fid" $ram.f > /dev/null 2> srv.log &
srv_pid=$!
wait_until 20 state_is "$fid" 1 || fail "fail-io: not live after recovery: $(cat srv.log)"
cmp <(dd if=/dev/ublkb$fid bs=4k count=1 iflag=direct status=none) block0 || fail "fail-io: data after recovery"
kill -9 "$srv_pid"
wait "$srv_pid" 2> /dev/null || true
wait_until 10 state_is "$fid" 3 || fail "fail-io: not fail-io after the second kill"
echo "fail-io: a read with no server failed, recovered, data kept"

# Plain USER_RECOVERY, idle: quiesced when its server dies. It and the fail-io device are
# left as they are for the unload below, which removes them.
./srv copy 16 plain $ram.p > id.txt 2> srv.log &
srv_pid=$!
wait_until 20 test -s id.txt || fail "plain: no id: $(cat srv.log)"
pdev=$(cat id.txt)
wait_until 20 test -b /dev/ublkb$pdev || fail "plain: no /dev/ublkb$pdev"
kill -9 "$srv_pid"
wait "$srv_pid" 2> /dev/null || true
wait_until 10 state_is "$pdev" 2 || fail "plain: state $(state "$pdev"), not quiesced (2)"

rmmod ublk_drv || fail "rmmod ublk_drv failed"
[ ! -e /dev/ublkb$pdev ] && [ ! -e /dev/ublkb$fid ] || fail "devices left after rmmod"
[ ! -e /dev/ublk-control ] || wait_until 10 test ! -e /dev/ublk-control || fail "/dev/ublk-control stayed"

# splice=0: ublkd sees no splice, and zero-copy=on is refused as on a kernel without zero copy.
insmod "$UBLK_DRIVER" splice=0 || fail "insmod splice=0 failed"
[ "$(cat /sys/module/ublk_drv/parameters/splice)" = N ] || fail "splice=0: the parameter reads $(cat /sys/module/ublk_drv/parameters/splice)"
truncate -s 64M zc.img
systemctl start ublkd
if out=$(ublkctl add loop zc.img --name zc --zero-copy on 2>&1); then fail "splice=0: zero-copy=on was accepted"; fi
[[ $out == *"or ublkd's own ublk driver (splice)"* ]] || fail "splice=0: unclear refusal: $out"
systemctl stop ublkd
rmmod ublk_drv || fail "rmmod after splice=0 failed"
echo "splice=0: zero-copy=on refused: $out"
# Leave it loaded for the tests after us, as load_ublk_driver left it.
insmod "$UBLK_DRIVER" || fail "insmod after rmmod failed"
wait_until 10 test -c /dev/ublk-control || fail "no /dev/ublk-control after the reload"

# Splice mode keeps a pipe per tag: a device whose pipes do not fit under ublkd's descriptor
# limit is refused with the numbers and the fix, and leaves nothing behind; one that fits works.
systemctl start ublkd
pid=$(ublkd_pid)
prlimit --pid "$pid" --nofile=1024:1024 || fail "prlimit on ublkd failed"
fds=$(fd_count "$pid")
if out=$(ublkctl add loop zc.img --name zcbig --zero-copy on --queues 1 --depth 1024 2>&1); then
	fail "splice mode: a device needing 2048 descriptors was accepted under a limit of 1024"
fi
[[ $out == *"need 2065 file descriptors"*"LimitNOFILE="* ]] || fail "splice mode, too many descriptors: unclear refusal: $out"
! ublkctl list | grep -q zcbig || fail "the refused device is listed: $(ublkctl list)"
! compgen -G "/dev/ublkb*" >/dev/null || fail "the refused device left $(ls /dev/ublkb*)"
[ "$(fd_count "$pid")" = "$fds" ] || fail "ublkd had $fds descriptors before the refused add, now $(fd_count "$pid")"
echo "splice mode, 2048 descriptors under a limit of 1024: $out"
zdev=$(ublkctl add loop zc.img --name zcfit --zero-copy on --queues 1 --depth 256) || fail "splice mode: a device that fits was refused"
ublkctl show --json zcfit | jq -e ".ZeroCopy == true" >/dev/null || fail "zcfit is not in splice mode: $(ublkctl show zcfit)"
dd if=/dev/urandom of=zc.data bs=64k count=16 status=none
dd if=zc.data of="$zdev" bs=64k oflag=direct status=none || fail "write to $zdev failed"
cmp zc.data <(dd if="$zdev" bs=64k count=16 iflag=direct status=none) || fail "$zdev read back other data"
ublkctl del zcfit || fail "ublkctl del zcfit failed"
systemctl stop ublkd
echo ok
