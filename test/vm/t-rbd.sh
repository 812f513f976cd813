#!/bin/bash
# vm-timeout: 1200
# The rbd target (issue 34) on the boot's single-node Ceph cluster (test/vm/ceph-cluster): fio
# crc32c write+verify, and "rbd export" of the image equals what the device holds; ext4 with
# checksummed files across remove/re-add; a snapshot maps read-only and refuses writes; a plain
# polkit-authorized user maps an image with their own keyring, which ublkctl passes, and cannot
# without it nor with root's key through their ceph.conf; bad input (no such pool or image,
# wrong key, cluster unreachable) is a one-line error in bounded time and leaves no device; no
# key in ublkd's log, state files or "ublkctl show".
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
require_cmd fio jq
start_ublkd
ublkctl list --json | jq -e 'true' > /dev/null
busctl get-property org.ublk.ublkd1 /org/ublk/ublkd1 org.ublk.ublkd1.Manager Targets | grep -q '"rbd"' ||
	skip "ublkd was built without librbd"
t0=$(date +%s%N)
ceph_cluster_up
echo "cluster ready in $((($(date +%s%N) - t0) / 1000000)) ms (0 if an earlier test started it)"
C=$CEPH_TEST_DIR
chmod 700 "$C"
admin_key=$(awk '/key =/ {print $3}' "$C/admin.keyring")
user_key=$(awk '/key =/ {print $3}' "$C/rbduser.keyring")
root_opts=(--ceph-conf "$C/client.conf" --keyring "$C/admin.keyring")

rbd_admin create --size 256M rbd/t1
t=$(date +%s%N)
dev=$(ublkctl add rbd rbd/t1 --name r1 "${root_opts[@]}")
echo "rbd/t1 mapped as $dev in $((($(date +%s%N) - t) / 1000000)) ms"
[ "$(blockdev --getsize64 "$dev")" = $((256 << 20)) ] || fail "$dev has $(blockdev --getsize64 "$dev") bytes, not 256M"
show=$(ublkctl show --json r1)
[ "$(jq -r .Backing <<< "$show")" = rbd/t1 ] || fail "Backing: $(jq -r .Backing <<< "$show")"

fio --name=v --filename="$dev" --ioengine=libaio --direct=1 --iodepth=16 --bsrange=4k-64k --rw=randwrite \
	--size=64M --verify=crc32c --verify_fatal=1 --output-format=json --output=fio.json > /dev/null 2>&1 ||
	fail "fio failed: $(head -c 1500 fio.json)"
sed -i '/^{/,$!d' fio.json
jq -e '.jobs[0].error == 0' fio.json > /dev/null || fail "fio errors: $(head -c 1500 fio.json)"
echo "fio crc32c write+verify: $(jq '.jobs[0].write.total_ios' fio.json) writes, $(jq '.jobs[0].read.total_ios' fio.json) verified reads, 0 errors"
dd if=/dev/urandom of=tail.bin bs=1M count=4 status=none
dd if=tail.bin of="$dev" bs=1M seek=252 oflag=direct conv=fsync status=none
sum=$(dd if="$dev" bs=1M iflag=direct status=none | sha256sum)
ublkctl del r1
rbd_admin export rbd/t1 - 2> /dev/null | sha256sum > export.sum
[ "$(cat export.sum)" = "$sum" ] || fail "rbd export differs from what the device read"
echo "rbd export of rbd/t1 equals the device's 256M"

# ext4: files checksummed across a remove and a re-add.
dev=$(ublkctl add rbd rbd/t1 --name r1 "${root_opts[@]}")
mkfs.ext4 -q -F "$dev"
mkdir -p /mnt/rbd
mount "$dev" /mnt/rbd
defer "umount /mnt/rbd 2> /dev/null || true"
cp -r /usr/share/doc/systemd /mnt/rbd/
head -c 24M /dev/urandom > /mnt/rbd/big
(cd /mnt/rbd && find . -type f -exec sha256sum {} + | sort -k2) > files.sum
umount /mnt/rbd
ublkctl del r1
dev=$(ublkctl add rbd rbd/t1 --name r1 "${root_opts[@]}")
mount "$dev" /mnt/rbd
(cd /mnt/rbd && find . -type f -exec sha256sum {} + | sort -k2) | cmp -s - files.sum ||
	fail "files on ext4 differ after remove and re-add"
echo "ext4: $(wc -l < files.sum) files checksummed equal after remove and re-add"
umount /mnt/rbd

# A snapshot: read-only, its contents those of the image when it was taken.
rbd_admin snap create rbd/t1@s1
dd if=/dev/urandom of="$dev" bs=1M count=1 oflag=direct conv=fsync status=none
ublkctl del r1
snap=$(ublkctl add rbd rbd/t1@s1 --name s1 "${root_opts[@]}")
[ "$(ublkctl show --json s1 | jq -r .ReadOnly)" = true ] || fail "the snapshot's device is not read-only"
[ "$(blockdev --getro "$snap")" = 1 ] || fail "$snap is writable"
! dd if=/dev/zero of="$snap" bs=4k count=1 oflag=direct status=none 2> /dev/null || fail "a write to the snapshot succeeded"
rbd_admin export rbd/t1@s1 - 2> /dev/null | sha256sum | cmp -s - <(dd if="$snap" bs=1M iflag=direct status=none | sha256sum) ||
	fail "the snapshot's device differs from rbd export of it"
ublkctl del s1
echo "snapshot rbd/t1@s1: read-only, writes refused, equals rbd export of it"

# Bad input: a one-line error within bounds, no device left behind.
bad() {
	local what=$1 bound=$2 t ms
	shift 2
	t=$(date +%s%N)
	if ublkctl add rbd "$@" > out 2> err; then
		fail "$what: the add succeeded: $(cat out)"
	fi
	ms=$((($(date +%s%N) - t) / 1000000))
	[ "$(wc -l < err)" = 1 ] || fail "$what: not one line: $(cat err)"
	[ "$ms" -le $((bound * 1000)) ] || fail "$what: took $ms ms"
	[ "$(ublkctl list --json | jq length)" = 0 ] || fail "$what: a device was left: $(ublkctl list)"
	echo "$what ($ms ms): $(cat err)"
}
printf '[client.admin]\n\tkey = %s\n' "$(ceph-authtool --gen-print-key)" > wrong.keyring
bad "no such pool" 60 nopool/t1 "${root_opts[@]}"
bad "no such image" 60 rbd/nothere "${root_opts[@]}"
bad "no such snapshot" 60 rbd/t1@nosnap "${root_opts[@]}"
bad "wrong key" 60 rbd/t1 --ceph-conf "$C/client.conf" --keyring wrong.keyring
bad "cluster unreachable" 30 rbd/t1 --mon-host 127.0.0.1:1 --keyring "$C/admin.keyring" --connect-timeout 5
bad "bad image spec" 10 noslash "${root_opts[@]}"
journalctl --sync
! journalctl -b -u ublkd --no-pager | grep -qF -e "$admin_key" -e "$user_key" || fail "a key is in ublkd's log"

# A plain user, authorized by polkit, with their own key.
polkit_grant_add_device rbdu
home=$(getent passwd rbdu | cut -d: -f6)
install -o rbdu -m 600 "$C/rbduser.keyring" "$home/rbd.keyring"
install -o rbdu -m 600 "$C/client.conf" "$home/ceph.conf"
rbd_admin create --size 64M rbd/u1
udev=$(as rbdu ublkctl add rbd rbd/u1 --name rbdu:u1 --ceph-id rbduser --keyring "$home/rbd.keyring" \
	--ceph-conf "$home/ceph.conf")
echo "rbdu mapped rbd/u1 with their own key: $udev"
as rbdu dd if=/dev/urandom of="$udev" bs=1M count=8 oflag=direct conv=fsync status=none
as rbdu dd if="$udev" bs=1M count=8 iflag=direct status=none | sha256sum > u.sum
grep -rqF -e "$user_key" -e "$admin_key" /run/ublkd/state && fail "a key is in a state file"
ublkctl show --json rbdu:u1 | grep -qF "$user_key" && fail "the key is in ublkctl show"
as rbdu ublkctl del rbdu:u1
rbd_admin export rbd/u1 u1.img > /dev/null 2>&1
head -c 8M u1.img | sha256sum | cmp -s - u.sum || fail "rbd export of rbd/u1 differs from what rbdu wrote"
# Without a keyring, with root's keyring path (ublkctl opens it as rbdu: refused), and with
# root's key named in their ceph.conf (ublkd ignores that key of a user's conf).
as rbdu ublkctl add rbd rbd/u1 --ceph-id rbduser --ceph-conf "$home/ceph.conf" 2> err && fail "rbdu mapped without a key"
grep -q "keyring" err || fail "no keyring: $(cat err)"
echo "rbdu without a keyring: $(cat err)"
as rbdu ublkctl add rbd rbd/u1 --ceph-conf "$home/ceph.conf" --keyring "$C/admin.keyring" 2> err && fail "rbdu used root's keyring"
echo "rbdu with root's keyring: $(cat err)"
printf '[global]\nmon_host = %s\n[client.admin]\nkeyring = %s\nlog_file = %s\n' \
	"$(awk -F' = ' '/mon_host/ {print $2}' "$C/client.conf")" "$C/admin.keyring" "$home/pwned.log" > user.conf
install -o rbdu -m 600 user.conf "$home/user.conf"
as rbdu ublkctl add rbd rbd/u1 --ceph-conf "$home/user.conf" --keyring "$home/rbd.keyring" 2> err &&
	fail "rbdu mapped as client.admin through their ceph.conf's keyring"
[ ! -e "$home/pwned.log" ] || fail "ublkd wrote the log file a user's ceph.conf named"
echo "rbdu as client.admin by their conf's keyring: $(cat err)"
[ "$(ublkctl list --json | jq length)" = 0 ] || fail "a device was left: $(ublkctl list)"

# A resize made elsewhere: the device follows where the kernel can (UBLK_F_UPDATE_SIZE, bit 10
# of KernelFeatures), else keeps its size.
rbd_admin create --size 64M rbd/g1
gdev=$(ublkctl add rbd rbd/g1 --name g1 "${root_opts[@]}")
rbd_admin resize --size 128M rbd/g1 2> /dev/null
features=$(busctl get-property org.ublk.ublkd1 /org/ublk/ublkd1 org.ublk.ublkd1.Manager KernelFeatures | cut -d' ' -f2)
grown() { [ "$(blockdev --getsize64 "$gdev")" = $((128 << 20)) ]; }
if (( features & (1 << 10) )); then
	wait_until 60 grown || fail "$gdev did not grow with its image: $(blockdev --getsize64 "$gdev") bytes"
	dd if=/dev/urandom of="$gdev" bs=1M seek=120 count=8 oflag=direct conv=fsync status=none ||
		fail "cannot write the grown part of $gdev"
	echo "rbd resize 64M -> 128M: $gdev followed, and its new end takes writes"
else
	sleep 5
	! grown || fail "$gdev grew without UBLK_F_UPDATE_SIZE"
	echo "rbd resize 64M -> 128M: $gdev keeps 64M (the kernel has no UBLK_F_UPDATE_SIZE)"
fi
ublkctl del g1

# /etc/ublk/NAME.conf with target=rbd, brought up and down by ublk@NAME: the snapshot, taken
# with the ext4 above unmounted (the image itself was written over since).
mkdir -p /etc/ublk
cat > /etc/ublk/rbdconf.conf <<EOT
target = rbd
image-spec = rbd/t1@s1
ceph-conf = $C/client.conf
keyring = $C/admin.keyring
io-timeout = 60s
EOT
defer "systemctl stop ublk@rbdconf 2> /dev/null; rm -f /etc/ublk/rbdconf.conf"
systemctl start ublk@rbdconf || fail "ublk@rbdconf failed: $(journalctl -u ublk@rbdconf -n 5 --no-pager)"
[ "$(ublkctl show --json rbdconf | jq -r .State)" = live ] || fail "ublk@rbdconf: no live device rbdconf"
wait_until 10 test -b /dev/ublk/by-name/rbdconf || fail "no /dev/ublk/by-name/rbdconf"
mount -o ro /dev/ublk/by-name/rbdconf /mnt/rbd
(cd /mnt/rbd && find . -type f -exec sha256sum {} + | sort -k2) | cmp -s - files.sum ||
	fail "files on ext4 differ through ublk@rbdconf"
umount /mnt/rbd
systemctl stop ublk@rbdconf
[ "$(ublkctl list --json | jq length)" = 0 ] || fail "ublk@rbdconf left a device after its stop: $(ublkctl list)"
echo "ublk@rbdconf: /etc/ublk/rbdconf.conf (target=rbd, a snapshot) brought the device up with its ext4, and down"
