#!/bin/bash
# Our own ublk driver (src/kernel/module): copy mode's buffers stay pinned between IOs (pins.c).
# A verifying fio on a root's loop device of ublkd, first with pin_cache=N: the copy that pins
# per IO (ublk_copy_user, counted by a kprobe) runs once per IO, and no pin outlives its IO (pins
# taken less pins released, from /proc/vmstat, back where they were). Then with pin_cache=Y: it
# runs for under 1 IO in 8 (a tag's first copies), the pins stay while the device is served,
# and go with the device. (The pins of each copy mode of a server of our own: t-kmod-copy.)
# Skips unless the run uses our module (vm-run --driver .../ublk_drv.ko).
# vm-timeout: 120
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
. "$UBLKD_SRC/test/vm/kmod-lib.sh"

kmod_start
start_ublkd
kprobe_count kmod_copy ublk_copy_user

# pins_fio SETTING: the verifying fio with pin_cache=SETTING; sets $pin_ios and $pin_calls
pins_fio() {
	local ios0 calls0

	set_param pin_cache "$1"
	ios0=$(ios_done "${pdev#/dev/}")
	calls0=$(kprobe_hits kmod_copy)
	fio --name=p --filename="$pdev" --rw=randwrite --bs=16k --iodepth=16 --size=32M \
		--ioengine=io_uring --direct=1 --verify=crc32c --verify_fatal=1 > "fio-pins-$1.log" 2>&1 ||
		fail "verifying fio with pin_cache=$1 failed: $(grep -m 3 -i 'verify\|crc\|err' "fio-pins-$1.log")"
	pin_ios=$(( $(ios_done "${pdev#/dev/}") - ios0 ))
	pin_calls=$(( $(kprobe_hits kmod_copy) - calls0 ))
}
truncate -s 64M /dev/shm/kmod-pins.img
defer "rm -f /dev/shm/kmod-pins.img"
pins0=$(pins_held)
pdev=$(ublkctl add loop /dev/shm/kmod-pins.img --name kmodpins)
wait_until 10 test -b "$pdev" || fail "no $pdev"
pins_fio N
[ "$pin_calls" -ge $(( pin_ios - pin_ios / 10 )) ] ||
	fail "with pin_cache=N, $pin_calls pinning copies for $pin_ios IOs (the probe misses them?)"
wait_until 10 pins_back_to "$pins0" || fail "with pin_cache=N, $(( $(pins_held) - pins0 )) pins outlive their IOs"
echo "pins: pin_cache=N: $pin_ios IOs verified, $pin_calls copies pinned per IO, none kept"
pins_fio Y
pins_kept=$(( $(pins_held) - pins0 ))
[ $(( 8 * pin_calls )) -lt "$pin_ios" ] ||
	fail "with pin_cache=Y, $pin_calls copies pinned per IO for $pin_ios IOs"
[ "$pins_kept" -gt 0 ] || fail "with pin_cache=Y, no pins kept while the device is served"
ublkctl del kmodpins || fail "del failed"
wait_until 10 pins_back_to "$pins0" ||
	fail "$(( $(pins_held) - pins0 )) pins left after the device's deletion (of $pins_kept kept)"
echo "pins: pin_cache=Y: $pin_ios IOs verified, $pin_calls copies pinned per IO, $pins_kept pages kept, released at del"
echo ok
