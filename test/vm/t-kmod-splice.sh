#!/bin/bash
# ublkd's splice mode on our own ublk driver (src/kernel/module), where the kernel has no
# AUTO_BUF_REG: zero-copy=on takes it, with a pipe per tag. A device whose pipes do not fit
# under ublkd's descriptor limit is refused with the numbers and the fix, and leaves nothing
# behind; one that fits moves data right. With the module loaded with splice=0, ublkd sees no
# splice and refuses zero-copy=on as on a kernel without zero copy. Reloads the module (twice).
# Skips unless the run uses our module (vm-run --driver .../ublk_drv.ko).
# vm-timeout: 120
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
. "$UBLKD_SRC/test/vm/kmod-lib.sh"

kmod_start
# ublkd.service (its unit modprobes ublk_drv: ours is loaded before each start)
install_ublkd
# whatever happens, the tests after this one find the module loaded as load_ublk_driver left it
defer "driver_splice || { systemctl stop ublkd; rmmod ublk_drv; load_ublk_driver; }"
truncate -s 64M zc.img

# splice=0: ublkd sees no splice, and zero-copy=on is refused as on a kernel without zero copy.
systemctl stop ublkd
rmmod ublk_drv || fail "rmmod ublk_drv failed"
insmod "$UBLK_DRIVER" splice=0 || fail "insmod splice=0 failed"
[ "$(cat /sys/module/ublk_drv/parameters/splice)" = N ] || fail "splice=0: the parameter reads $(cat /sys/module/ublk_drv/parameters/splice)"
systemctl start ublkd
if out=$(ublkctl add loop zc.img --name zc --zero-copy on 2>&1); then fail "splice=0: zero-copy=on was accepted"; fi
[[ $out == *"or ublkd's own ublk driver (splice)"* ]] || fail "splice=0: unclear refusal: $out"
systemctl stop ublkd
rmmod ublk_drv || fail "rmmod after splice=0 failed"
echo "splice=0: zero-copy=on refused: $out"
# Loaded again as load_ublk_driver left it, for the rest of this test and the tests after it.
insmod "$UBLK_DRIVER" || fail "insmod after rmmod failed"
wait_until 10 test -c /dev/ublk-control || fail "no /dev/ublk-control after the reload"

# Splice mode keeps a pipe per tag: a device whose pipes do not fit under ublkd's descriptor
# limit is refused with the numbers and the fix, and leaves nothing behind; one that fits works.
start_ublkd
pid=$(ublkd_pid)
prlimit --pid "$pid" --nofile=1024:1024 || fail "prlimit on ublkd failed"
fds=$(fd_count "$pid")
if out=$(ublkctl add loop zc.img --name zcbig --zero-copy on --queues 1 --depth 1024 2>&1); then
	fail "splice mode: a device needing 2048 descriptors was accepted under a limit of 1024"
fi
[[ $out == *"need 2065 file descriptors"*"LimitNOFILE="* ]] || fail "splice mode, too many descriptors: unclear refusal: $out"
! ublkctl list | grep -q zcbig || fail "the refused device is listed: $(ublkctl list)"
! compgen -G "/dev/ublkb*" >/dev/null || fail "the refused device left $(ls /dev/ublkb*)"
[ "$(fd_count "$pid")" = "$fds" ] || fail "ublkd had $fds descriptors before the refused add, now $(fd_count "$pid")"
echo "splice mode, 2048 descriptors under a limit of 1024: $out"
zdev=$(ublkctl add loop zc.img --name zcfit --zero-copy on --queues 1 --depth 256) || fail "splice mode: a device that fits was refused"
ublkctl show --json zcfit | jq -e ".ZeroCopy == true" >/dev/null || fail "zcfit is not in splice mode: $(ublkctl show zcfit)"
dd if=/dev/urandom of=zc.data bs=64k count=16 status=none
dd if=zc.data of="$zdev" bs=64k oflag=direct status=none || fail "write to $zdev failed"
cmp zc.data <(dd if="$zdev" bs=64k count=16 iflag=direct status=none) || fail "$zdev read back other data"
ublkctl del zcfit || fail "ublkctl del zcfit failed"
echo ok
