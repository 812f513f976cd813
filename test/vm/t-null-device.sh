#!/bin/bash
# A first device end to end: ublkd under systemd serves a 1 GiB null device;
# its size and IO scheduler are right, fio reads it, and deleting it leaves nothing behind.
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

# null touches no data: where the driver has USER_COPY (bit 7) the driver copies none either
if (( $(ublkctl features) & (1 << 7) )); then
	[ "$(ublkctl show --json first | jq .ZeroCopy)" = true ] ||
		fail "a null device is not served without copies (UBLK_F_USER_COPY) though the driver has it"
fi

# The IO scheduler: "none", as loop and null_blk have it (udev/60-ublk.rules; our driver's own
# default too); an admin's rule after ours picks another. Without our rule, our driver still
# makes "none"; the in-tree driver gives a single-queue disk mq-deadline (printed).
sched() { sed -n 's/.*\[\(.*\)\].*/\1/p' "/sys/block/${1#/dev/}/queue/scheduler"; }
[ "$(sched "$dev")" = none ] || fail "$dev has the IO scheduler $(sched "$dev"), not none (udev/60-ublk.rules)"
rules=/etc/udev/rules.d
mkdir -p $rules
defer "rm -f $rules/61-ublk-sched-test.rules $rules/60-ublk.rules; udevadm control --reload"
echo 'ACTION=="add", SUBSYSTEM=="block", KERNEL=="ublkb[0-9]*", ATTR{queue/scheduler}="mq-deadline"' \
	> $rules/61-ublk-sched-test.rules
udevadm control --reload
other=$(ublkctl add null --size 16M --name sched)
[ "$(sched "$other")" = mq-deadline ] || fail "an admin's rule after ours did not choose mq-deadline: $(sched "$other")"
ublkctl del sched
rm $rules/61-ublk-sched-test.rules
ln -s /dev/null $rules/60-ublk.rules
udevadm control --reload
other=$(ublkctl add null --size 16M --name sched)
if [ "${UBLK_DRIVER:-intree}" != intree ]; then
	[ "$(sched "$other")" = none ] || fail "without udev's rule our driver's disk has $(sched "$other"), not none"
fi
echo "IO scheduler: none; an admin's rule: mq-deadline; without udev/60-ublk.rules: $(sched "$other")" \
	"(driver ${UBLK_DRIVER:-intree})"
ublkctl del sched
rm $rules/60-ublk.rules
udevadm control --reload

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
