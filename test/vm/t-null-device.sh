#!/bin/bash
# A first device end to end: ublkd under systemd serves a 1 GiB null device;
# its size is right, fio reads it, and deleting it leaves nothing behind.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"

load_ublk_driver
install_ublkd
systemctl start ublkd
echo "kernel $(uname -r), ublk features $(ublkctl features)"

dev=$(ublkctl add null --size 1G --name first)
echo "added $dev"
[[ $dev =~ ^/dev/ublkb([0-9]+)$ ]] || fail "ublkctl add printed '$dev', not a /dev/ublkbN path"
id=${BASH_REMATCH[1]}
[ -b "$dev" ] || fail "$dev is not a block device"
[ -e /sys/class/ublk-char/ublkc$id ] || fail "no /sys/class/ublk-char/ublkc$id"

size=$(blockdev --getsize64 "$dev")
[ "$size" = 1073741824 ] || fail "size of $dev is $size, expected 1073741824"

ublkctl list
ublkctl --json list | jq -e --argjson id "$id" \
        '.[] | select(.Id == $id and .Name == "first" and .Target == "null" and .State == "live")' >/dev/null ||
        fail "ublkctl list --json does not show device $id as live"

ublkctl show first
ublkctl show --json first | jq -e --argjson id "$id" '.Id == $id and .Size == 1073741824 and .State == "live"
        and .Target == "null" and .BlockDevice == "/dev/ublkb\($id)" and .Queues == 1' >/dev/null ||
        fail "ublkctl show --json does not match the device"

fio --name=read --filename="$dev" --rw=randread --bs=4k --iodepth=32 --ioengine=io_uring --direct=1 \
    --runtime=3 --time_based --output-format=json > fio.json || fail "fio failed"
read_ios=$(jq '.jobs[0].read.total_ios' fio.json)
errors=$(jq '.jobs[0].error' fio.json)
echo "fio: $read_ios reads, $(jq '.jobs[0].read.iops | floor' fio.json) IOPS, error=$errors"
[ "$errors" = 0 ] || fail "fio reported error $errors"
[ "$read_ios" -gt 1000 ] || fail "fio completed only $read_ios reads in 3 s"

ublkctl del "$id"
wait_until 10 test ! -e "$dev" || fail "$dev still exists after del"
wait_until 10 sh -c '[ -z "$(ls /sys/class/ublk-char)" ]' ||
        fail "left behind in /sys/class/ublk-char: $(ls /sys/class/ublk-char)"
[ "$(ublkctl --json list)" = "[]" ] || fail "ublkctl list not empty after del"

# A device that does not exist: one clear line, exit 1.
if out=$(ublkctl del "$id" 2>&1); then fail "del of a removed device succeeded"; fi
[ "$out" = "ublkctl: no such device: $id" ] || fail "unexpected message: $out"
echo "ok"
