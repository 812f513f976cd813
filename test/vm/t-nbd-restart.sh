#!/bin/bash
# vm-timeout: 480
# An nbd device outlives its server and ublkd: fio crc32c write+verify runs, round after round,
# while nbdkit (file plugin: the data survives it) is killed (SIGKILL) and started again 5 times
# and ublkd is killed 3 times, once while nbdkit is down (the next ublkd's first connections are
# refused: it keeps trying for connect-timeout). Every round must pass with 0 errors and 0
# verify failures, and the device must say "reconnecting" while its server is down. Then a server that stays away:
# after reconnect-timeout, IO fails with EIO, the device stays and says "disconnected".
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
require_cmd nbdkit fio jq
start_ublkd
[[ $(busctl get-property org.ublk.ublkd1 /org/ublk/ublkd1 org.ublk.ublkd1.Manager Targets) == *'"nbd"'* ]] ||
	skip "ublkd built without the nbd target (libnbd)"
T=/run/t-nbd-restart
mkdir -p $T
defer "rm -rf $T"

truncate -s 128M $T/disk.img
start_nbdkit() {
	rm -f $T/s.sock
	nbdkit -U $T/s.sock -P $T/nbdkit.pid file $T/disk.img
	wait_until 10 test -S $T/s.sock || fail "nbdkit did not start"
}
defer "kill \$(cat $T/nbdkit.pid) 2>/dev/null || true"
start_nbdkit
dev=$(ublkctl add nbd "nbd+unix:///?socket=$T/s.sock" --name r --reconnect-timeout 120 --connect-timeout 30)
status() { ublkctl show --json "${1:-r}" | jq -r .TargetStatus; }

# The killer, in the background: its progress in $T/killed (one line per kill).
(
	set +e
	for i in 1 2 3 4 5; do
		sleep 3
		kill -9 "$(cat $T/nbdkit.pid)"
		echo "nbdkit $i" >> $T/killed
		sleep 2
		echo "status while down: $(status)" >> $T/killed
		if [ "$i" = 3 ]; then
			# Both at once, as in a host's crash: the next ublkd's first connections are
			# refused until nbdkit is back, and it must keep trying, not drop the device.
			old=$(ublkd_pid)
			kill -9 "$old"
			echo "ublkd $i, with nbdkit down" >> $T/killed
			wait_until 30 ublkd_replaced "$old"
			sleep 8
			journalctl -u ublkd -o cat --no-pager | grep -q "cannot connect to the NBD server.*trying again" &&
				echo "the next ublkd was refused and tried again" >> $T/killed
			start_nbdkit
			wait_until 60 sh -c 'ublkctl show --json r | jq -e ".State == \"live\"" >/dev/null'
			continue
		fi
		start_nbdkit
		if [ "$i" -le 2 ]; then
			sleep 2
			old=$(ublkd_pid)
			kill -9 "$old"
			echo "ublkd $i" >> $T/killed
			wait_until 30 ublkd_replaced "$old"
			wait_until 60 sh -c 'ublkctl show --json r | jq -e ".State == \"live\"" >/dev/null'
		fi
	done
	echo done >> $T/killed
) > $T/killer.log 2>&1 &
killer=$!
defer "kill $killer 2>/dev/null || true"

rounds=0
while ! grep -qx done $T/killed 2>/dev/null; do
	rounds=$((rounds + 1))
	fio --name=r$rounds --filename="$dev" --ioengine=io_uring --direct=1 --iodepth=16 --bsrange=4k-64k \
		--rw=randwrite --size=16M --offset=$(((rounds % 6) * 16))M --randseed=$rounds --verify=crc32c \
		--verify_fatal=1 --output-format=json --output=$T/r$rounds.json ||
		fail "round $rounds: fio failed: $(cat $T/killed 2>/dev/null | tr '\n' ' ') $(head -c 800 $T/r$rounds.json)"
	sed -i '/^{/,$!d' $T/r$rounds.json
	jq -e '.jobs[0].error == 0 and .jobs[0].write.total_ios > 0 and .jobs[0].read.total_ios > 0' \
		$T/r$rounds.json >/dev/null || fail "round $rounds: fio reported errors"
	[ $rounds -lt 200 ] || fail "the killer did not finish: $(cat $T/killer.log $T/killed)"
done
wait $killer || true
cat $T/killed
[ "$(grep -c '^nbdkit' $T/killed)" = 5 ] && [ "$(grep -c '^ublkd' $T/killed)" = 3 ] ||
	fail "not every kill happened: $(cat $T/killed $T/killer.log)"
grep -q 'status while down: reconnecting' $T/killed || fail "no 'reconnecting' while the server was down"
grep -q 'the next ublkd was refused and tried again' $T/killed ||
	fail "the ublkd after the kill with nbdkit down did not say it was refused and tried again"
wait_until 30 sh -c '[ "$(ublkctl show --json r | jq -r .TargetStatus)" = connected ]' ||
	fail "not connected again: $(status)"
echo "$rounds fio rounds, 5 nbdkit kills, 3 ublkd kills: 0 errors, 0 verify failures"
ublkctl del r

# A server that stays away: IO held until reconnect-timeout, then EIO; the device stays.
dev=$(ublkctl add nbd "nbd+unix:///?socket=$T/s.sock" --name gone --reconnect-timeout 3)
t0=$(date +%s%N)
kill -9 "$(cat $T/nbdkit.pid)"
if dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none 2>$T/dd.err; then
	fail "a read succeeded with the server gone"
fi
t1=$(date +%s%N)
grep -q "Input/output error" $T/dd.err || fail "expected EIO: $(cat $T/dd.err)"
# the loss is seen at the kill at the earliest, and IO is held reconnect-timeout (3 s) from then
[ $(((t1 - t0) / 1000000)) -ge 2900 ] ||
	fail "the read failed after $(((t1 - t0) / 1000000)) ms, before the reconnect-timeout"
[ "$(status gone)" = disconnected ] || fail "status $(status gone), expected disconnected"
ublkctl show --json gone | jq -e '.State == "live"' >/dev/null || fail "the device did not stay"
# the server back: ublkd reconnects, IO works again
start_nbdkit
wait_until 30 sh -c '[ "$(ublkctl show --json gone | jq -r .TargetStatus)" = connected ]' ||
	fail "no reconnect after the timeout: $(ublkctl show --json gone | jq -r .TargetStatus)"
dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none || fail "IO after the reconnect failed"
ublkctl del gone
echo "reconnect-timeout: EIO after $(((t1 - t0) / 1000000)) ms, device kept, reconnected later"
