#!/bin/bash
# Our own ublk driver (src/kernel/module): a user's device whose server does not answer
# (kmod-perm stall). The request fails after unprivileged_io_timeout, the server's late answer
# gives the tag back, and the device serves on every tag. Its disk opens for its owner (uid and
# gid) and root only, as upstream, even where the node's mode lets others in.
# Skips unless the run uses our module (vm-run --driver .../ublk_drv.ko).
# vm-timeout: 120
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
. "$UBLKD_SRC/test/vm/kmod-lib.sh"

kmod_start
# ublkd's udev helper (ublk-owner) gives a user's block node to the user
install_ublkd
build_kmod_perm
head -c 8M /dev/urandom > pattern

set_param unprivileged_io_timeout 2
./kmod-perm stall $ua 64 100000 10 > id.txt 2> stall.log &
stall_pid=$!
wait_until 20 test -s id.txt || fail "no id: $(cat stall.log)"
id=$(cat id.txt)
wait_until 20 test -b /dev/ublkb$id || fail "no /dev/ublkb$id: $(cat stall.log)"

# A user's disk opens for its owner (uid and gid) and root only, as upstream (EPERM), even
# where the node's mode lets others in (its owner could chmod it).
owned_by() { [ "$(stat -c %u "$1" 2>/dev/null)" = "$2" ]; }
bd_open() { # UID GID: opens /dev/ublkb$id read-only as UID:GID, prints 0 or -errno
	setpriv --reuid="$1" --regid="$2" --clear-groups python3 -c '
import os, sys
try:
    os.close(os.open(sys.argv[1], os.O_RDONLY))
    print(0)
except OSError as e:
    print(-e.errno)' /dev/ublkb$id
}
wait_until 10 owned_by /dev/ublkb$id $ua || fail "/dev/ublkb$id not given to $ua"
chmod 0666 /dev/ublkb$id
opens="owner $(bd_open $ua $ua), other user $(bd_open $ub $ub), owner's uid with another gid $(bd_open $ua $ub), root $(bd_open 0 0)"
[ "$opens" = "owner 0, other user $EPERM, owner's uid with another gid $EPERM, root 0" ] ||
	fail "opens of a user's disk (mode 0666): $opens"
echo "stall: opens of ua's /dev/ublkb$id (mode 0666): $opens"

# The read the server holds fails after the request timeout (2 s), long before its late answer.
t0=$(date +%s%N)
if dd if=/dev/ublkb$id of=/dev/null bs=4k skip=12500 count=1 iflag=direct status=none 2> dd.err; then
	fail "a read the server held succeeded"
fi
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q "holding tag" stall.log || fail "the server never saw the read: $(cat stall.log)"
(( ms >= 1500 && ms < 9000 )) || fail "the held read failed after $ms ms (timeout 2 s, late answer at 10 s)"
echo "stall: the held read failed after $ms ms: $(cat dd.err)"
wait_until 20 grep -q "late commit" stall.log || fail "no late commit: $(cat stall.log)"
dd if=pattern of=/dev/ublkb$id bs=2M oflag=direct status=none || fail "write after the late commit failed"
cmp <(dd if=/dev/ublkb$id bs=2M count=4 iflag=direct status=none) pattern ||
	fail "read back after the late commit differs"
./kmod-perm cmd 0 stop "$id" /dev/ublkc"$id" > /dev/null
kmod_perm_expect 0 0 del "$id" /dev/ublkc"$id"
wait "$stall_pid" || fail "server exit status $?: $(cat stall.log)"
echo "stall: after the late answer 8 MiB written and read back in 2 MiB requests (4 x 512 KiB, depth 4)"
echo ok
