#!/bin/bash
# A backing that fails (issue 6): a loop device over a sparse file on a file system that fills
# up (ENOSPC), and over a device-mapper "error" range (EIO). The writes and reads that hit the
# failure end in IO errors on /dev/ublkbN within a bound, never a crash or a hang; ublkd keeps
# serving the same device, what was written before reads back intact, and the device is removed
# cleanly afterwards. With our driver (vm-run --driver), both devices are in splice mode
# (zero-copy=on): the failures then come from splices, with data in the pipes.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
require_cmd dmsetup losetup
start_ublkd
pid=$(ublkd_pid)
bound=30        # seconds an IO on a failing backing may take to fail, under TCG
zc_opt=()
driver_splice && zc_opt=(--zero-copy on)
echo "loop devices: ${zc_opt[*]:-copy mode}"

# the block layer logs "I/O error, dev X" (EIO) or "critical space allocation error, dev X" (ENOSPC)
io_errors() { dmesg | grep -Ec " error, dev $1\b" || true; }
# expect_io_error WHAT CMD...: CMD fails within the bound, with an IO error (not a timeout)
expect_io_error() {
	local what=$1 rc=0 t
	shift
	t=$(date +%s%N)
	timeout $bound "$@" 2> err.txt || rc=$?
	ms=$((($(date +%s%N) - t) / 1000000))
	[ $rc != 124 ] || fail "$what: still waiting after $bound s (a hang, not an error)"
	[ $rc != 0 ] || fail "$what: succeeded"
	grep -qi "input/output error\|no space" err.txt || fail "$what: failed without an IO error: $(head -n 3 err.txt)"
}
still_served() {
	[ "$(ublkd_pid)" = "$pid" ] || fail "$1: ublkd was replaced (pid $pid -> $(ublkd_pid))"
	ublkctl show "$2" | grep -Eq '^State +live$' || fail "$1: the device is not live: $(ublkctl show "$2")"
}

# 1. ENOSPC: a 256 MiB sparse file on a 64 MiB file system
scratch_ext4 /mnt/small 64M
truncate -s 256M /mnt/small/sparse.img
dev=$(ublkctl add loop /mnt/small/sparse.img --name full "${zc_opt[@]}")
blk=${dev#/dev/}
head -c 4M /dev/urandom > head.bin
dd if=head.bin of="$dev" bs=1M oflag=direct status=none || fail "writing the first 4 MiB failed"
before=$(io_errors "$blk")
expect_io_error "writing 200 MiB past a full file system" dd if=/dev/zero of="$dev" bs=1M seek=8 count=200 oflag=direct status=none
enospc_ms=$ms
[ "$(io_errors "$blk")" -gt "$before" ] || fail "no 'critical space allocation error, dev $blk' in the kernel log after ENOSPC"
still_served ENOSPC full
cmp -n 4M head.bin "$dev" || fail "ENOSPC: the first 4 MiB changed"
# Blocks that exist still take writes once the file system is full.
head -c 1M /dev/urandom > again.bin
dd if=again.bin of="$dev" bs=1M oflag=direct status=none || fail "ENOSPC: rewriting allocated blocks failed"
cmp -n 1M again.bin "$dev" || fail "ENOSPC: the rewrite does not read back"
ublkctl del full
echo "ENOSPC: the write failed with an IO error after $enospc_ms ms; ublkd (pid $pid) kept serving; data before it intact; allocated blocks still writable"

# 2. EIO: 16 MiB that work, then 16 MiB of device-mapper "error"
truncate -s 16M good.img
loopdev=$(losetup --find --show good.img)
defer "losetup -d $loopdev"
printf '0 32768 linear %s 0\n32768 32768 error\n' "$loopdev" | dmsetup create ublkd-test-eio
defer "dmsetup remove --retry ublkd-test-eio"
dev=$(ublkctl add loop /dev/mapper/ublkd-test-eio --name eio "${zc_opt[@]}")
blk=${dev#/dev/}
before=$(io_errors "$blk")
head -c 8M /dev/urandom > good.bin
dd if=good.bin of="$dev" bs=1M oflag=direct status=none || fail "EIO: writing the good half failed"
expect_io_error "reading the error range" dd if="$dev" of=/dev/null bs=64k skip=320 count=16 iflag=direct status=none
eio_read_ms=$ms
expect_io_error "writing the error range" dd if=/dev/zero of="$dev" bs=64k seek=320 count=16 oflag=direct status=none
eio_write_ms=$ms
expect_io_error "reading across the edge" dd if="$dev" of=/dev/null bs=1M skip=15 count=2 iflag=direct status=none
[ "$(io_errors "$blk")" -gt "$before" ] || fail "no 'I/O error, dev $blk' in the kernel log after EIO"
still_served EIO eio
cmp -n 8M good.bin "$dev" || fail "EIO: the good half changed"
ublkctl del eio
[ -z "$(ls /sys/class/ublk-char)" ] || fail "left in /sys/class/ublk-char: $(ls /sys/class/ublk-char)"
echo "EIO: reads failed after $eio_read_ms ms, writes after $eio_write_ms ms, with IO errors; ublkd kept serving; the good range intact; removed cleanly"
echo ok
