#!/bin/bash
# Runs inside the VM for tools/try: what a new user would type, one step at a time.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
step() { printf '\n\033[1m# %s\033[0m\n' "$*"; }

load_ublk_driver
install_ublkd
step "systemctl start ublkd"
systemctl start ublkd
systemctl --no-pager status ublkd | head -n 3

step "truncate -s 1G /var/tmp/disk.img && ublkctl add loop /var/tmp/disk.img --name demo"
truncate -s 1G /var/tmp/disk.img
dev=$(ublkctl add loop /var/tmp/disk.img --name demo)
echo "$dev"

step "mkfs.ext4 -q $dev && mount $dev /mnt"
mkfs.ext4 -q "$dev"
mount "$dev" /mnt
head -c 64M /dev/urandom > /mnt/random.bin
cp -r /usr/share/doc/bash /mnt/
sync

step "ublkctl list"
ublkctl list
step "ublkctl show demo"
ublkctl show demo
step "findmnt /mnt; df -h /mnt"
findmnt /mnt
df -h /mnt
step "sha256sum /mnt/random.bin (then umount, re-mount, sha256sum again)"
a=$(sha256sum < /mnt/random.bin)
umount /mnt
echo 3 > /proc/sys/vm/drop_caches
mount "$dev" /mnt
b=$(sha256sum < /mnt/random.bin)
echo "$a"; echo "$b"
[ "$a" = "$b" ] || fail "the file changed across a remount"
echo "$dev is in use by ext4 at /mnt, and the data survived a remount."
