#!/bin/bash
# vm-timeout: 400
# A device's /dev/ublkcN held open by someone other than ublkd (root: users never get the node)
# holds neither its removal nor ublkd's stop (issue 28, finding 3). DEL_DEV waits for the node
# to be closed so that the id can be used again at once; for a removal ublkd interrupts that
# wait after 10 s (the device is gone by then, its id stays taken until the holder closes), and
# at exit after 10 s in all. Without the bound, the removal waits as long as the holder likes
# and "systemctl stop ublkd" ends in SIGKILL after TimeoutStopSec, with the other devices
# left without a server. Driver-dependent (the two drivers delete in different orders): it
# runs on the 7.x leg (in-tree driver) and on vm-kmod-6.12 (ours).
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
require_cmd jq
start_ublkd
ublkd_log() { journalctl -b -u ublkd --no-pager -o cat; }

# 1. Remove: returns, the device is gone, and its id comes free once the holder closes.
ublkctl add null --size 16M --name held --no-start > /dev/null || fail "add held"
hid=$(ublkctl --json show held | jq .Id)
exec 7<> "/dev/ublkc$hid"
t0=$SECONDS
timeout $((60 * TIME_FACTOR)) ublkctl del held || fail "del of a device whose char node is held failed or hung (rc $?)"
del_s=$((SECONDS - t0))
ublkctl show held > /dev/null 2>&1 && fail "held is still listed"
[ -e "/sys/class/ublk-char/ublkc$hid" ] && fail "ublkc$hid is still in sysfs after del"
ublkd_log | grep -q "ublk device $hid: /dev/ublkc$hid is still open elsewhere" || fail "no log of the held node"
# Another device meanwhile gets another id, and works.
dev=$(ublkctl add null --size 16M --name beside) || fail "add beside while ublkc$hid is held"
[ "$dev" != "/dev/ublkb$hid" ] || fail "beside got the held id $hid"
dd if="$dev" of=/dev/null bs=4k count=16 status=none || fail "read from $dev"
ublkctl del beside
exec 7>&-
wait_until 10 test ! -e "/dev/ublkc$hid" || fail "/dev/ublkc$hid left after its holder closed it"
echo "remove: del returned after ${del_s} s with ublkc$hid held; the id came free once it was closed"

# 2. Stop: a held node of one device delays ublkd's exit by at most the bound; the others are
# removed, and ublkd ends on its own (not killed by systemd after TimeoutStopSec).
ublkctl add null --size 16M --name held --no-start > /dev/null || fail "add held (2)"
hid=$(ublkctl --json show held | jq .Id)
odev=$(ublkctl add null --size 16M --name other) || fail "add other"
exec 7<> "/dev/ublkc$hid"
t0=$SECONDS
timeout $((120 * TIME_FACTOR)) systemctl stop ublkd || fail "systemctl stop ublkd failed or hung (rc $?)"
stop_s=$((SECONDS - t0))
result=$(systemctl show -P Result ublkd)
[ "$result" = success ] || fail "ublkd's stop ended with Result=$result (killed after TimeoutStopSec?)"
[ -e "$odev" ] && fail "$odev is left after ublkd stopped"
[ -e "/sys/class/ublk-char/ublkc$hid" ] && fail "ublkc$hid is still in sysfs after ublkd stopped"
exec 7>&-
wait_until 10 test ! -e "/dev/ublkc$hid" || fail "/dev/ublkc$hid left after its holder closed it"
systemctl start ublkd || fail "ublkd did not start again"
[ "$(ublkctl --json list | jq length)" = 0 ] || fail "devices after the restart: $(ublkctl list)"
echo "stop: ublkd ended by itself in ${stop_s} s with ublkc$hid held (Result=$result); $odev removed"
