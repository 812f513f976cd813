#!/bin/bash
# Our own ublk driver (src/kernel/module) serving ublkd: it loads in place of the in-tree one,
# answers GET_FEATURES (UNPRIVILEGED_DEV among them), serves a device written and read through
# the page cache and O_DIRECT (4-byte aligned buffers, as in-tree), and survives its server being
# killed mid-IO: the IO ends, nothing hangs, and the restarted ublkd serves the device again.
# The other tests of the driver are the other t-kmod-*.sh (test/README.md lists them).
# Skips unless the run uses our module (vm-run --driver .../ublk_drv.ko).
# vm-timeout: 120
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
. "$UBLKD_SRC/test/vm/kmod-lib.sh"

kmod_start
[ -c /dev/ublk-control ] || fail "no /dev/ublk-control"
grep -q "ublk-char" /proc/devices || fail "no ublk-char major in /proc/devices"
start_ublkd

features=$(ublkctl features)
echo "features: $features"
ublkctl --json features >/dev/null 2>&1 || true
(( features & 0x20 )) || fail "GET_FEATURES does not advertise UBLK_F_UNPRIVILEGED_DEV: $features"

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
ios=$(ios_done ublkb$id)
fio --name=r --filename="$dev" --rw=randread --bs=4k --iodepth=32 --ioengine=io_uring --direct=1 \
	--runtime=60 --time_based --output-format=json > fio.json 2>/dev/null &
fio_pid=$!
wait_until 30 ios_past ublkb$id $((ios + 100)) ||
	fail "fio did not get going"
kill -9 "$(ublkd_pid)"
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
echo ok
