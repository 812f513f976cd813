#!/bin/bash
# vm-timeout: 900
# The qcow2 target (issue 33), judged by qemu's own tools. Images made by qemu-img (clusters
# 4K, 64K, 2M; compat 0.10 and 1.1; qemu-img convert -c; an overlay chain of depth 3 with
# relative -b/-F names): fio crc32c write+verify through ublkd, then the device read back into
# a raw reference, the device deleted, and "qemu-img check" (no errors, no leaks) and
# "qemu-img compare" image vs reference. The other way: images qemu-img wrote read through
# ublkd equal qemu-img's raw conversion. ext4 on a qcow2 device, files checksummed across
# del/add. Crash: ublkd killed (SIGKILL) 10 times during random allocating writes, fio verify
# 0 errors after recovery, qemu-img check 0 corruptions after each kill. 2 and 4 queues allocating at once.
# Bad images (truncated, encrypted, a chain ublkctl cannot open, fds that are not the chain)
# refused with the engine's words and nothing left behind.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
require_cmd qemu-img qemu-io fio jq mkfs.ext4
start_ublkd
ublkctl add --help | grep -q qcow2 || fail "ublkctl has no qcow2 target"
# A tmpfs of its own: /run's (20 % of memory) is too small for the images, and files removed
# from a loop-mounted ext4 would not give their pages back.
T=/mnt/t-qcow2
mkdir -p $T
mount -t tmpfs -o size=1200M tmpfs $T
defer "cd /; umount -l $T"
cd $T

# fio_verify DEV NAME SIZE [FIO ARGS...]: random allocating writes with crc32c, verified.
fio_verify() {
	local dev=$1 name=$2 size=$3
	shift 3
	fio --name="$name" --filename="$dev" --ioengine=io_uring --direct=1 --iodepth=16 --bsrange=4k-64k \
		--rw=randwrite --size="$size" --randseed=7 --verify=crc32c --verify_fatal=1 "$@" \
		--output-format=json --output=$T/$name.json >/dev/null || fail "$name: fio failed: $(head -c 600 $T/$name.json)"
	sed -i '/^{/,$!d' $T/$name.json
	jq -e '[.jobs[] | .error == 0 and .write.total_ios > 0 and .read.total_ios > 0] | all' $T/$name.json \
		>/dev/null || fail "$name: fio reported errors"
}
# check_clean IMG: qemu-img check finds no corruption and no leak.
check_clean() {
	local out
	out=$(qemu-img check --output=json "$1" 2>$T/check.err) ||
		fail "qemu-img check $1 failed: $out $(head -c 400 $T/check.err)"
	jq -e '(.corruptions // 0) == 0 and (.leaks // 0) == 0 and ."check-errors" == 0' <<<"$out" >/dev/null ||
		fail "qemu-img check $1: $out"
}
# finish IMG DEV NAME: the device's bytes into NAME.ref, the device deleted, the image checked
# and compared with the reference.
finish() {
	local img=$1 dev=$2 name=$3
	dd if="$dev" of=$T/$name.ref bs=1M iflag=direct status=none || fail "$name: reading $dev back failed"
	ublkctl del "$name"
	check_clean "$img"
	qemu-img compare -f qcow2 -F raw "$img" $T/$name.ref >/dev/null ||
		fail "$name: qemu-img compare: the image is not what ublkd read back"
	rm -f $T/$name.ref "$img"
}

head -c 48M /dev/urandom > $T/rnd.raw

# ---- formats: fresh images written through ublkd -------------------------------------------
for spec in 4k:1.1 64k:1.1 2M:1.1 64k:0.10; do
	cs=${spec%%:*} compat=${spec#*:}
	name=f${cs}-${compat/./}
	qemu-img create -q -f qcow2 -o cluster_size=$cs,compat=$compat $T/$name.qcow2 64M
	# 4K clusters with a small cache: L2 tables evicted and loaded again all the time.
	cache=()
	[ "$cs" = 4k ] && cache=(--metadata-cache 64K)
	dev=$(ublkctl add qcow2 $T/$name.qcow2 --name "$name" "${cache[@]}")
	status=$(ublkctl show --json "$name" | jq -r .TargetStatus)
	v=3
	[ "$compat" = 0.10 ] && v=2
	grep -q "^qcow2 v$v, ${cs^^} clusters" <<<"$status" || fail "$name: status '$status'"
	[ "$(blockdev --getsize64 "$dev")" = $((64 << 20)) ] || fail "$name: size $(blockdev --getsize64 "$dev")"
	fio_verify "$dev" "$name" 24M
	# A discard and zeroes, as the engine does them, then more data past them.
	blkdiscard -o $((4 << 20)) -l $((4 << 20)) "$dev" 2>/dev/null || true
	blkdiscard -z -o $((12 << 20)) -l $((1 << 20)) "$dev" || fail "$name: write-zeroes failed"
	dd if=$T/rnd.raw of="$dev" bs=1M count=8 seek=40 oflag=direct conv=notrunc status=none
	finish $T/$name.qcow2 "$dev" "$name"
	echo "$name: fio verify ok, qemu-img check clean, compare equal"
done
ublkctl show --json f64k-11 >/dev/null 2>&1 && fail "f64k-11 still there"

# ---- what qemu-img wrote, read through ublkd ------------------------------------------------
qemu-img convert -f raw -O qcow2 $T/rnd.raw $T/conv.qcow2
qemu-img convert -c -f raw -O qcow2 -o cluster_size=64k $T/rnd.raw $T/comp.qcow2
for name in conv comp; do
	dev=$(ublkctl add qcow2 $T/$name.qcow2 --name "$name" --read-only)
	cmp "$dev" $T/rnd.raw || fail "$name: ublkd reads other bytes than qemu-img wrote"
	ublkctl del "$name"
done
rm $T/conv.qcow2
# Compressed clusters overwritten (copy on write of a compressed cluster), checked.
dev=$(ublkctl add qcow2 $T/comp.qcow2 --name comp)
fio_verify "$dev" comp 16M --offset=8M
finish $T/comp.qcow2 "$dev" comp
echo "qemu-img convert (plain, -c) read back equal; compressed image rewritten, check clean"

# ---- an overlay chain of depth 3, relative names, ublkctl run from elsewhere ----------------
mkdir -p $T/chain
head -c 32M $T/rnd.raw > $T/chain/base.raw
(cd $T/chain &&
	qemu-img create -q -f qcow2 -b base.raw -F raw l1.qcow2 64M &&
	qemu-io -f qcow2 -c 'write -P 0x11 1M 2M' l1.qcow2 >/dev/null &&
	qemu-img create -q -f qcow2 -o cluster_size=4k -b l1.qcow2 -F qcow2 l2.qcow2 64M &&
	qemu-io -f qcow2 -c 'write -P 0x22 2M 1M' -c 'write -z 20M 1M' l2.qcow2 >/dev/null &&
	qemu-img create -q -f qcow2 -b l2.qcow2 -F qcow2 top.qcow2 64M)
sums=$(cd $T/chain && md5sum base.raw l1.qcow2 l2.qcow2)
qemu-img convert -O raw $T/chain/top.qcow2 $T/chain.want
dev=$(cd / && ublkctl add qcow2 $T/chain/top.qcow2 --name chain)
status=$(ublkctl show --json chain | jq -r .TargetStatus)
echo "chain: $status"
grep -q 'backing: l2.qcow2 (qcow2) <- l1.qcow2 (qcow2) <- base.raw (raw)' <<<"$status" ||
	fail "chain: status '$status'"
cmp "$dev" $T/chain.want || fail "chain: ublkd reads other bytes than qemu-img convert"
fio_verify "$dev" chain 16M
finish $T/chain/top.qcow2 "$dev" chain
[ "$(cd $T/chain && md5sum base.raw l1.qcow2 l2.qcow2)" = "$sums" ] || fail "chain: a backing file changed"
rm $T/chain.want
echo "chain of depth 3: read equal to qemu-img convert, written, check clean, backing files unchanged"

# ---- ext4 on a qcow2 device, files across del/add ------------------------------------------
qemu-img create -q -f qcow2 $T/fs.qcow2 256M
dev=$(ublkctl add qcow2 $T/fs.qcow2 --name fs --queues 2)
mkfs.ext4 -q "$dev"
mkdir -p /mnt/q2fs
mount "$dev" /mnt/q2fs
for i in 1 2 3 4; do head -c $((i * 3))M /dev/urandom > /mnt/q2fs/f$i; done
cp $T/rnd.raw /mnt/q2fs/
(cd /mnt/q2fs && sha256sum f* rnd.raw) > $T/fs.sums
umount /mnt/q2fs
ublkctl del fs
check_clean $T/fs.qcow2
dev=$(ublkctl add qcow2 $T/fs.qcow2 --name fs)
mount "$dev" /mnt/q2fs
(cd /mnt/q2fs && sha256sum -c --quiet $T/fs.sums) || fail "fs: files changed across del/add"
rm /mnt/q2fs/f2
umount /mnt/q2fs
fsck.ext4 -n "$dev" >/dev/null 2>&1 || fail "fs: fsck found errors"
ublkctl del fs
check_clean $T/fs.qcow2
rm $T/fs.qcow2
echo "ext4 on qcow2: files equal across del/add, fsck and qemu-img check clean"

# ---- 2 and 4 queues allocating at once -----------------------------------------------------
for nq in 2 4; do
	name=q$nq
	qemu-img create -q -f qcow2 -o cluster_size=64k $T/$name.qcow2 128M
	dev=$(ublkctl add qcow2 $T/$name.qcow2 --name $name --queues $nq)
	# One job per queue's CPU, each on its own quarter: clusters allocated from every queue.
	fio_verify "$dev" $name 32M --numjobs=4 --offset_increment=32M --cpus_allowed_policy=split
	finish $T/$name.qcow2 "$dev" $name
	echo "$nq queues: 4 jobs allocating at once, verify ok, check clean, compare equal"
done

# ---- crash: ublkd killed during allocating writes, the image checked after each -----------
# Each of 10 fio rounds writes a fresh region (every write allocates) and is cut by a SIGKILL
# of ublkd a second in; the round must end with 0 errors once the next ublkd has recovered the
# device, and qemu-img check must then find no corruption (leaks are what a crash may leave).
# The metadata order (qcow2.h) keeps the file consistent at every instant, so the check needs
# no quiet moment beyond the round's end; -U because ublkd still has the image open.
qemu-img create -q -f qcow2 -o cluster_size=64k $T/crash.qcow2 128M
dev=$(ublkctl add qcow2 $T/crash.qcow2 --name crash --queues 2)
[ "$(systemctl show -P NFileDescriptorStore ublkd)" = 1 ] ||
	fail "the image's fd is not in systemd's fd store ($(systemctl show -P NFileDescriptorStore ublkd))"
kills=10
for i in $(seq $kills); do
	fio_verify "$dev" crash$i 8M --offset=$(((i - 1) * 8))M --randseed=$i &
	fio_pid=$!
	sleep 1
	old=$(ublkd_pid)
	systemctl kill --kill-who=main -s KILL ublkd
	wait_until 30 ublkd_replaced "$old"
	wait_until 60 sh -c 'ublkctl show --json crash | jq -e ".State == \"live\"" >/dev/null'
	wait $fio_pid || fail "crash: fio round $i failed across kill $i"
	# (exit 3: leaks only; the leaked clusters are listed on stderr)
	out=$(qemu-img check -U --output=json $T/crash.qcow2 2>$T/check.err) || [ $? = 3 ] ||
		fail "crash: kill $i: qemu-img check: $out $(head -c 400 $T/check.err)"
	jq -e '(.corruptions // 0) == 0 and ."check-errors" == 0' <<<"$out" >/dev/null || fail "crash: kill $i: $out"
done
fio_verify "$dev" crash-after 32M --offset=96M
dd if="$dev" of=$T/crash.ref bs=1M iflag=direct status=none
ublkctl del crash
out=$(qemu-img check --output=json $T/crash.qcow2 2>$T/check.err) || [ $? = 3 ] ||
	fail "crash: qemu-img check: $out $(head -c 400 $T/check.err)"
jq -e '(.corruptions // 0) == 0 and ."check-errors" == 0' <<<"$out" >/dev/null || fail "crash: $out"
qemu-img compare -f qcow2 -F raw $T/crash.qcow2 $T/crash.ref >/dev/null || fail "crash: compare differs"
rm $T/crash.qcow2 $T/crash.ref
echo "crash: $kills SIGKILLs of ublkd, each during a round of allocating writes: 0 fio errors, 0 corruptions after each, $(jq '.leaks // 0' <<<"$out") leaked clusters at the end, compare equal"

# ---- refused: bad images, chains that are not the image's ----------------------------------
refused() {     # refused WORDS CMD...: CMD fails, saying WORDS, and leaves no device
	local words=$1 out
	shift
	if out=$("$@" 2>&1); then
		fail "accepted: $*: $out"
	fi
	grep -q -- "$words" <<<"$out" || fail "refused without '$words': $*: $out"
	[ "$(ublkctl list --json | jq length)" = 0 ] || fail "a device was left: $(ublkctl list)"
	echo "refused: $out"
}
qemu-img create -q -f qcow2 $T/trunc.qcow2 64M
qemu-io -f qcow2 -c 'write 0 8M' $T/trunc.qcow2 >/dev/null
truncate -s 100K $T/trunc.qcow2
refused "past the end" ublkctl add qcow2 $T/trunc.qcow2
qemu-img create -q --object secret,id=s0,data=secret123 -f qcow2 \
	-o encrypt.format=luks,encrypt.key-secret=s0 $T/enc.qcow2 16M
refused "encrypted" ublkctl add qcow2 $T/enc.qcow2
qemu-img create -q -u -f qcow2 -b missing.raw -F raw $T/orphan.qcow2 16M
refused "cannot open the backing file $T/missing.raw" ublkctl add qcow2 $T/orphan.qcow2
# Straight to the bus: an overlay without its chain, a plain image with a chain it never named.
(cd $T/chain && qemu-img create -q -f qcow2 -b l2.qcow2 -F qcow2 top2.qcow2 64M)
refused "names the backing file 'l2.qcow2', which was not passed" \
	python3 "$UBLKD_SRC/test/vm/bus-add.py" qcow2 --fd 3 3<$T/chain/top2.qcow2 --key image
qemu-img create -q -f qcow2 $T/plain.qcow2 16M
refused "names no backing file" \
	python3 "$UBLKD_SRC/test/vm/bus-add.py" qcow2 --fd 3 3<$T/plain.qcow2 --key image --chain 4 4<$T/rnd.raw
refused "not a qcow2 image" ublkctl add qcow2 $T/rnd.raw
echo "bad images refused, nothing left"
