#!/bin/bash
# vm-timeout: 600
# Bad input on the bus (issue 6): thousands of malformed calls -- wrong signatures, unknown
# targets and options, values out of range, bad fds, huge and odd strings, methods, properties
# and objects that do not exist -- from root and from a user. Each is answered with a named
# error; ublkd stays up (same PID), its device list is unchanged, and its fd count and memory
# come back to where they were.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
start_ublkd
keep=$(ublkctl add null --size 16M --name keep)
path=/org/ublk/ublkd1/device/${keep#/dev/ublkb}
pid=$(ublkd_pid)
fds() { fd_count "$pid"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' /proc/"$pid"/status; }
list_before=$(ublkctl --json list)
fds_before=$(fds)
rss_before=$(rss_kib)

seed=${UBLKD_FUZZ_SEED:-$(date +%s)}
"$UBLKD_SRC"/test/vm/bus-fuzz.py "$seed" 2500 "$path" || fail "root: a malformed call was not refused by name (seed $seed)"
setpriv --reuid=65534 --regid=65534 --clear-groups "$UBLKD_SRC"/test/vm/bus-fuzz.py $((seed + 1)) 500 "$path" \
	|| fail "nobody: a malformed call was not refused by name (seed $((seed + 1)))"

[ "$(ublkd_pid)" = "$pid" ] || fail "ublkd was restarted (PID $pid, now $(ublkd_pid))"
[ "$(systemctl show -P NRestarts ublkd)" = 0 ] || fail "ublkd restarted"
[ "$(ublkctl --json list)" = "$list_before" ] || fail "device list changed: $(ublkctl list)"
# Refused Adds of a valid target run (and fail) in a work thread: wait for the last to end.
fds_back() { [ "$(fds)" -le "$fds_before" ]; }
wait_until 10 fds_back || fail "ublkd has $(fds) fds, $fds_before before"
rss_after=$(rss_kib)
echo "ublkd: same PID, device list unchanged, fds $fds_before -> $(fds), RSS $rss_before -> $rss_after KiB"
ublkd_sanitized || (( rss_after - rss_before < 16384 )) || fail "RSS grew by $((rss_after - rss_before)) KiB"
dd if="$keep" of=/dev/null bs=1M count=1 iflag=direct 2> /dev/null || fail "$keep no longer reads"
echo ok
