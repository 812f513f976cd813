#!/bin/bash
# vm-timeout: 420
# The loop target returns what was written: fio crc32c verify (buffered and O_DIRECT backing,
# 1, 2 and 4 queues), ext4 contents across a device re-add (fsck + checksums), discard and
# write-zeroes reaching the backing file, read-only devices, clear refusals, and TargetStatus
# naming a backing that costs io_uring a worker thread per IO. With our driver (vm-run
# --driver), also zero-copy=on in splice mode.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
start_ublkd
scratch_ext4 /mnt/scratch 6G
pid=$(ublkd_pid)

# fio_verify DEV NAME QUEUES: random writes of 4k..128k with crc32c, verified in the same run,
# then verified again in a separate read-only pass; any IO or verify error fails.
fio_verify() {
	local dev=$1 name=$2 jobs=$3 common
	common=(--filename="$dev" --ioengine=io_uring --direct=1 --iodepth=16 --bsrange=4k-128k
		--rw=randwrite --size=64M --numjobs="$jobs" --offset_increment=64M --randseed=42
		--verify=crc32c --verify_fatal=1 --group_reporting --output-format=json)
	# --output: fio's own notices on stdout would otherwise corrupt the JSON
	fio --name="$name" "${common[@]}" --output="$name-write.json" || fail "$name: fio write+verify failed"
	fio --name="$name" "${common[@]}" --verify_only --output="$name-verify.json" ||
		fail "$name: fio verify pass failed: $(head -c 600 "$name-verify.json")"
	# fio warns about several writers even though offset_increment keeps their regions apart
	sed -i '/^{/,$!d' "$name-write.json" "$name-verify.json"
	jq -e '.jobs[0].error == 0 and .jobs[0].write.total_ios > 0' "$name-write.json" >/dev/null ||
		fail "$name: fio reported errors: $(head -c 1500 "$name-write.json")"
	jq -e '.jobs[0].error == 0 and .jobs[0].read.total_ios > 0' "$name-verify.json" >/dev/null ||
		fail "$name: verify pass reported errors"
	echo "$name: $(jq '.jobs[0].write.total_ios' "$name-write.json") writes verified twice, ${jobs} job(s)"
}

# Zero copy (UBLK_F_AUTO_BUF_REG, bit 11) is the default where the kernel has it (7.x):
# cases 1, 3 and 4 run in that mode there; case 2 always copies.
features=$(ublkctl features)
zc=false; (( features & (1 << 11) )) && zc=true
echo "kernel features $features: zero copy by default: $zc"
# ublkd's own driver offers splice() on /dev/ublkcN: zero-copy=on uses it where there is no
# AUTO_BUF_REG (case 9).
splice=false
[ $zc = false ] && driver_splice && splice=true

# 1. O_DIRECT backing on ext4 (auto picks it), 1 queue; the backing fd must carry O_DIRECT.
img=/mnt/scratch/a.img
truncate -s 1G $img
dev=$(ublkctl add loop $img --name a)
flags=$(fd_flags "$pid" $img) || fail "ublkd has no fd open on $img"
(( 8#$flags & 8#40000 )) || fail "backing fd flags $flags: no O_DIRECT with direct-io=auto on ext4"
ublkctl show --json a | jq -e --argjson zc $zc '.DirectIO == true and .ZeroCopy == $zc' >/dev/null ||
	fail "DirectIO/ZeroCopy properties: $(ublkctl show --json a)"
fio_verify "$dev" direct-q1 1
ublkctl del a

# 2. buffered backing (forced), copy mode (forced), 2 queues with 2 concurrent jobs
dev=$(ublkctl add loop $img --name b --direct-io off --zero-copy off --queues 2)
ublkctl show --json b | jq -e '.DirectIO == false and .ZeroCopy == false' >/dev/null ||
	fail "DirectIO/ZeroCopy properties: $(ublkctl show --json b)"
flags=$(fd_flags "$pid" $img) || fail "ublkd has no fd open on $img"
(( 8#$flags & 8#40000 )) && fail "backing fd flags $flags: O_DIRECT although direct-io=off"
fio_verify "$dev" buffered-q2 2
ublkctl del b

# 3. 4 queues, 4 jobs, O_DIRECT
nproc_vm=$(nproc)
if [ "$nproc_vm" -ge 4 ]; then
	dev=$(ublkctl add loop $img --name c --queues 4 --depth 64)
	fio_verify "$dev" direct-q4 4
	ublkctl del c
else
	fail "this test needs 4 vCPUs for a 4-queue device (vm-run --smp 4), the VM has $nproc_vm"
fi

# 4. ext4 on the device: files, sync, remove the device, add it again on the same file;
# fsck -n is clean and every checksum matches.
fsimg=/mnt/scratch/fs.img
truncate -s 512M $fsimg
dev=$(ublkctl add loop $fsimg --name fs)
mkfs.ext4 -q "$dev"
mkdir -p /mnt/fs
mount "$dev" /mnt/fs
head -c 48M /dev/urandom > /mnt/fs/random.bin
cp -r /usr/share/doc/systemd /usr/share/doc/bash /mnt/fs/
(cd /mnt/fs && find . -type f -print0 | sort -z | xargs -0 sha256sum) > sums
sync
umount /mnt/fs
ublkctl del fs
dev=$(ublkctl add loop $fsimg --name fs)
fsck.ext4 -n -f "$dev" > fsck.log 2>&1 || { cat fsck.log; fail "fsck -n found problems after re-add"; }
mount "$dev" /mnt/fs
(cd /mnt/fs && sha256sum --quiet -c "$OLDPWD/sums") || fail "checksums differ after re-add"
echo "ext4: $(wc -l < sums) files verified after remove + re-add, fsck clean"
umount /mnt/fs
ublkctl del fs

# 5. discard punches holes in the backing file; write-zeroes reads back as zeros.
dimg=/mnt/scratch/d.img
truncate -s 256M $dimg
dev=$(ublkctl add loop $dimg --name d)
dd if=/dev/urandom of="$dev" bs=1M count=128 oflag=direct status=none
before=$(stat -c %b $dimg)
blkdiscard -o 0 -l 64M "$dev"
after=$(stat -c %b $dimg)
echo "discard: backing file blocks $before -> $after (512-byte units)"
[ $((before - after)) -ge $((60 * 2048)) ] || fail "discard of 64M freed only $(( (before - after) / 2048 ))M of the backing file"
blkdiscard -z -o 64M -l 32M "$dev"
cmp -n $((32 << 20)) <(dd if="$dev" bs=1M skip=64 count=32 iflag=direct status=none) /dev/zero ||
	fail "write-zeroes range does not read back as zeros"
cmp -n $((32 << 20)) <(dd if="$dev" bs=1M skip=96 count=32 iflag=direct status=none) \
	<(dd if=$dimg bs=1M skip=96 count=32 status=none) || fail "data beside the zeroed range changed"
ublkctl del d

# 6. read-only, on request and from a read-only fd: the block device refuses writes.
dev=$(ublkctl add loop $dimg --read-only --name ro)
[ "$(blockdev --getro "$dev")" = 1 ] || fail "read-only device is not read-only"
if dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct status=none 2>/dev/null; then fail "write to a read-only device succeeded"; fi
ublkctl show --json ro | jq -e '.ReadOnly == true' >/dev/null || fail "ReadOnly property is not true"
ublkctl del ro
# A file that can only be read (on a read-only mount): ublkctl passes a read-only fd, and the
# device is read-only without being asked.
mkdir -p /mnt/ro
mount --bind /mnt/scratch /mnt/ro && mount -o remount,bind,ro /mnt/ro
defer "umount /mnt/ro"
dev=$(ublkctl add loop /mnt/ro/d.img --name ro2 2> add.err)
grep -q "not writable: the device is read-only" add.err || fail "no read-only notice: $(cat add.err)"
[ "$(blockdev --getro "$dev")" = 1 ] || fail "device on a read-only fd is not read-only"
ublkctl del ro2

# 7. refusals: one clear line, exit 1, nothing created.
if [ $zc = false ] && [ $splice = false ]; then
	if out=$(ublkctl add loop $img --zero-copy on 2>&1); then fail "zero-copy=on accepted on a kernel without it"; fi
	echo "refused: $out"
	[[ $out == *"needs a kernel with UBLK_F_AUTO_BUF_REG"* ]] || fail "unclear refusal: $out"
fi
if out=$(ublkctl add null --size 1G --zero-copy on 2>&1); then fail "zero-copy=on accepted for null"; fi
[[ $out == *"no zero-copy mode"* ]] || fail "unclear refusal: $out"
if out=$(ublkctl add null --size 1G --direct-io on 2>&1); then fail "direct-io accepted for null"; fi
[[ $out == *"Option 'direct-io' is not valid for target 'null'"* ]] || fail "unclear refusal: $out"
truncate -s 1M /mnt/scratch/small.img
if out=$(ublkctl add loop /mnt/scratch/small.img --size 1G 2>&1); then fail "a 1G device on a 1M file was created"; fi
echo "refused: $out"
[[ $out == *"less than the requested size"* ]] || fail "unclear refusal: $out"
if out=$(ublkctl add loop $dimg --offset 1000 2>&1); then fail "an unaligned offset was accepted"; fi
[[ $out == *"offset must be a multiple"* ]] || fail "unclear refusal: $out"
if out=$(ublkctl add loop /mnt/scratch 2>&1); then fail "a directory was accepted as backing"; fi
echo "refused: $out"
[ "$(ublkctl --json list)" = "[]" ] || fail "a refused add left a device: $(ublkctl list)"
[ -z "$(ls /sys/class/ublk-char)" ] || fail "a refused add left $(ls /sys/class/ublk-char)"

# 8. offset: the device shows the file from OFFSET on.
head -c 1M /dev/urandom > /mnt/scratch/pattern
dd if=/mnt/scratch/pattern of=$dimg bs=1M seek=3 conv=notrunc status=none
dev=$(ublkctl add loop $dimg --offset 3M --size 1M --name off)
[ "$(blockdev --getsize64 "$dev")" = $((1 << 20)) ] || fail "size with --offset is wrong"
cmp <(dd if="$dev" bs=1M count=1 iflag=direct status=none) /mnt/scratch/pattern || fail "offset device shows the wrong data"
ublkctl del off

# 9. splice mode (our driver, zero-copy=on): a pipe per tag, data verified with O_DIRECT and
# buffered backing, FUA writes (O_DSYNC) read back through the page cache, a read cut short by
# the backing's end, ext4 across re-add.
if [ $splice = true ]; then
	for dio in on off; do
		dev=$(ublkctl add loop $img --name s --direct-io $dio --zero-copy on --queues 2)
		ublkctl show --json s | jq -e '.ZeroCopy == true' >/dev/null ||
			fail "splice: ZeroCopy property: $(ublkctl show --json s)"
		depth=$(ublkctl show --json s | jq .Depth)
		pipes=$(find /proc/"$pid"/fd -lname 'pipe:*' | wc -l)
		(( pipes >= 2 * 2 * depth )) || fail "splice: ublkd holds $pipes pipe fds, not one pipe per tag (2 queues, depth $depth)"
		fio_verify "$dev" splice-dio-$dio 2
		dd if=/mnt/scratch/pattern of="$dev" bs=64k seek=100 oflag=direct,dsync status=none ||
			fail "splice: O_DSYNC write failed"
		echo 3 > /proc/sys/vm/drop_caches
		cmp <(dd if="$dev" bs=64k skip=100 count=16 status=none) /mnt/scratch/pattern ||
			fail "splice: O_DSYNC write reads back differently"
		ublkctl del s
	done
	# A read that the backing ends in the middle of (its file was truncated under the device):
	# only the bytes read reach the request (none of the buffer's stale rest), the rest fails
	# with an IO error; ublkd serves on.
	head -c 8M /dev/urandom > /mnt/scratch/short.img
	cp /mnt/scratch/short.img short.orig
	dev=$(ublkctl add loop /mnt/scratch/short.img --name short --zero-copy on)
	truncate -s $((6 * 1024 * 1024 + 12 * 1024)) /mnt/scratch/short.img
	if timeout 30 dd if="$dev" of=tail.bin bs=64k skip=96 count=1 iflag=direct status=none 2> dd.err; then
		fail "splice: a read across the backing's end succeeded ($(stat -c %s tail.bin) bytes)"
	fi
	grep -qi "input/output error" dd.err || fail "splice: a read across the backing's end: $(cat dd.err)"
	cmp <(dd if="$dev" bs=4k skip=1536 count=3 iflag=direct status=none) <(tail -c +$((6 * 1024 * 1024 + 1)) short.orig | head -c 12k) ||
		fail "splice: the 12 KiB before the backing's end read back differently"
	cmp <(dd if="$dev" bs=1M count=6 iflag=direct status=none) <(head -c 6M short.orig) ||
		fail "splice: the first 6 MiB read back differently after the short read"
	ublkctl del short
	echo "splice: a read across the backing's end fails with an IO error, the bytes before it read back"
	dev=$(ublkctl add loop $fsimg --name fs --zero-copy on)
	mount "$dev" /mnt/fs
	(cd /mnt/fs && sha256sum --quiet -c "$OLDPWD/sums") || fail "splice: checksums differ"
	rm -r /mnt/fs/systemd && cp -r /usr/share/doc/systemd /mnt/fs/
	head -c 16M /dev/urandom > /mnt/fs/random2.bin
	(cd /mnt/fs && find . -type f -print0 | sort -z | xargs -0 sha256sum) > sums2
	umount /mnt/fs
	ublkctl del fs
	dev=$(ublkctl add loop $fsimg --name fs --zero-copy off)
	fsck.ext4 -n -f "$dev" > fsck.log 2>&1 || { cat fsck.log; fail "splice: fsck -n found problems"; }
	mount "$dev" /mnt/fs
	(cd /mnt/fs && sha256sum --quiet -c "$OLDPWD/sums2") || fail "splice: checksums differ after re-add in copy mode"
	umount /mnt/fs
	ublkctl del fs
	echo "splice: fio verify (O_DIRECT and buffered backing), O_DSYNC, ext4 written in splice mode and checked in copy mode"
fi
# 10. A backing whose file system takes no non-blocking IO costs an io_uring worker thread per
# IO (tmpfs on 6.12 and 7.3): TargetStatus says so exactly when ublkd's backing reads run in io_uring's
# workers (iou-wrk-*), counted while fio reads; an ext4 file takes non-blocking IO.
# workers_while_reading DEV: the most iou-wrk threads of ublkd seen during 4 s of O_DIRECT reads
workers_while_reading() {
	local most=0 n t comm
	fio --name=w --filename="$1" --ioengine=io_uring --direct=1 --rw=randread --bs=4k --iodepth=8 \
		--size=32M --time_based --runtime=4 --output=/dev/null &
	for _ in 1 2 3 4 5 6; do
		sleep 0.5
		n=0
		for t in /proc/"$pid"/task/*; do
			read -r comm < "$t/comm" 2> /dev/null || continue
			[[ $comm == iou-wrk-* ]] && n=$((n + 1))
		done
		(( n > most )) && most=$n
	done
	wait $! || fail "fio read of $1 failed"
	echo "$most"
}
mkdir -p /run/tmpfs-backing
mount -t tmpfs -o size=64M tmpfs /run/tmpfs-backing
defer "umount /run/tmpfs-backing"
head -c 32M /dev/urandom > /run/tmpfs-backing/t.img
for backing in /run/tmpfs-backing/t.img $img; do
	dev=$(ublkctl add loop $backing --name w)
	status=$(ublkctl show --json w | jq -r .TargetStatus)
	workers=$(workers_while_reading "$dev")
	echo "$(findmnt -n -o FSTYPE --target $backing) backing: $workers io_uring workers during reads; TargetStatus '$status'"
	if [ -n "$status" ]; then
		[[ $status == *"worker threads"* ]] || fail "loop TargetStatus: '$status'"
		(( workers > 0 )) || fail "TargetStatus names worker threads, but none served the reads"
	else
		[ "$backing" = $img ] || (( workers == 0 )) || fail "$workers io_uring workers served the reads, TargetStatus is silent"
	fi
	[ "$backing" != $img ] || [ -z "$status" ] || fail "an ext4 backing is said to need workers: '$status'"
	ublkctl del w
done
echo ok
