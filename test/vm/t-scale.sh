#!/bin/bash
# vm-timeout: 600
# Many devices and slow operations: 64 devices added and removed, twice, each call answered
# and the kernel's devices following; ublkd's fds come back to their baseline and its RSS
# settles (once with a sanitized ublkd, whose RSS says nothing: the second round is for it).
# The times of the calls are printed, never judged: a loaded host makes them what it will
# (bench/bench-guest.sh reports them on a quiet one). Then, with
# every START_DEV made to take 5 s (UBLKD_TEST_START_DELAY_MS), a slow Add blocks no other
# caller, a device busy starting refuses a second operation, and stopping ublkd mid-start
# lets the start finish and answers its caller, then leaves nothing in the kernel. A START_DEV
# held up by a queue that fetches late (UBLKD_TEST_FETCH_DELAY_MS) is cancelled and sent again.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
start_ublkd
pid=$(ublkd_pid)
N=64
fds() { fd_count "$pid"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' /proc/"$pid"/status; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
stats() { sort -n | awk '{ a[NR] = $1 } END { printf "median %d ms, max %d ms", a[int((NR + 1) / 2)], a[NR] }'; }
base_fds=$(fds)
[ -z "$(ls /sys/class/ublk-char)" ] || fail "ublk devices exist before the test: $(ls /sys/class/ublk-char)"

rounds=2
ublkd_sanitized && rounds=1
for round in $(seq 1 $rounds); do
	: > add.ms
	: > del.ms
	for i in $(seq 0 $((N - 1))); do
		t=$(date +%s%N)
		ublkctl add null --size 16M --name "s$i" > /dev/null || fail "round $round: add s$i failed"
		ms_since "$t" >> add.ms
	done
	[ "$(ls /sys/class/ublk-char | wc -l)" = "$N" ] || fail "round $round: $(ls /sys/class/ublk-char | wc -l) char devices"
	[ "$(ublkctl list | grep -c ' live ')" = "$N" ] || fail "round $round: not $N live devices"
	for i in $(seq 0 $((N - 1))); do
		t=$(date +%s%N)
		ublkctl del "s$i" || fail "round $round: del s$i failed"
		ms_since "$t" >> del.ms
	done
	[ -z "$(ls /sys/class/ublk-char)" ] || fail "round $round: left in the kernel: $(ls /sys/class/ublk-char)"
	fds_back() { [ "$(fds)" = "$base_fds" ]; }
	wait_until 5 fds_back || fail "round $round: $(fds) fds after removing all, baseline $base_fds"
	rss[$round]=$(rss_kb)
	echo "round $round: $N devices; add+start $(stats < add.ms), del $(stats < del.ms); fds $(fds) (baseline $base_fds), RSS ${rss[$round]} KiB"
done
[ "$rounds" = 1 ] || [ $((rss[2] - rss[1])) -lt 1024 ] || fail "RSS grew from ${rss[1]} to ${rss[2]} KiB in the second round"

# Slow starts: a drop-in gives ublkd the test delay.
mkdir -p /run/systemd/system/ublkd.service.d
printf '[Service]\nEnvironment=UBLKD_TEST_START_DELAY_MS=5000\n' > /run/systemd/system/ublkd.service.d/slow.conf
defer "rm -rf /run/systemd/system/ublkd.service.d; systemctl daemon-reload; systemctl restart ublkd"
systemctl daemon-reload
systemctl restart ublkd

ublkctl add null --size 16M --name idle --no-start > /dev/null
pid=$(ublkd_pid)
base_threads=$(threads_of "$pid")
t=$(date +%s%N)
ublkctl add null --size 16M --name slow > slow.out 2>&1 &
slow=$!
# Once the Add's thread runs, its name is taken, though the device is not on the bus yet.
add_running() { [ "$(threads_of "$pid")" -gt "$base_threads" ]; }
wait_until 3 add_running || fail "no operation thread for the slow Add"
out=$(ublkctl add null --size 16M --name slow 2>&1) && fail "a second Add with the name of a device being added succeeded"
[[ $out == *"'slow' exists already"* ]] || fail "the name of a device being added is not reserved: $out"
t1=$(date +%s%N)
ublkctl list > list.out
ublkctl show idle > /dev/null
ublkctl del idle
quick=$(ms_since "$t1")
# Answered while the Add still waits: a loop blocked by it would answer only after it.
kill -0 $slow 2> /dev/null || fail "the slow add ended before the other calls were answered ($quick ms; $(cat slow.out))"
grep -q ' slow ' list.out && fail "a device being added is listed"
wait $slow || fail "the slow add failed: $(cat slow.out)"
took=$(ms_since "$t")
[ "$took" -ge 5000 ] || fail "the slow add took $took ms, less than the injected 5000"
echo "slow start: list, show and del answered in $quick ms while an Add took $took ms"

ublkctl stop slow
ublkctl start slow > start.out 2>&1 &
starting=$!
# "stop" changes nothing before the start begins ("is not live") nor during it ("is starting").
busy() { ! out=$(ublkctl stop slow 2>&1) && [[ $out == *"is starting: try again when that is done"* ]]; }
wait_until 2 busy || fail "stop of a starting device: $out"
out=$(ublkctl del slow 2>&1) && fail "del of a starting device succeeded"
[[ $out == *"is starting: try again when that is done"* ]] || fail "del of a starting device: $out"
wait $starting || fail "start failed: $(cat start.out)"
ublkctl list | grep -Eq ' slow +null +live ' || fail "not live after start"
echo "busy: a device being started refuses stop and del until the start is done"
ublkctl del slow        # a restart would leave it to the next ublkd

# A START_DEV that waits too long (queue 0 fetching 3 s late) is cancelled after 2 s and sent
# again, and the start succeeds.
printf '[Service]\nEnvironment=UBLKD_TEST_FETCH_DELAY_MS=3000\n' > /run/systemd/system/ublkd.service.d/slow.conf
systemctl daemon-reload
systemctl restart ublkd
t=$(date +%s%N)
dev=$(ublkctl add null --size 16M --name late) || fail "add with a late queue failed"
took=$(ms_since "$t")
journalctl --sync
this_ublkd=(journalctl --no-pager _SYSTEMD_INVOCATION_ID="$(systemctl show -P InvocationID ublkd)")
"${this_ublkd[@]}" | grep -q "START_DEV did not complete in 2 s and was cancelled (it was waiting for the queues); sending it again" \
	|| fail "no START_DEV retry logged: $("${this_ublkd[@]}" | tail -n 5)"
dd if="$dev" of=/dev/null bs=64k count=16 iflag=direct status=none || fail "read from $dev after a retried START_DEV failed"
echo "late queue: START_DEV cancelled after 2 s and sent again; the Add took $took ms and $dev reads"
ublkctl del late

printf '[Service]\nEnvironment=UBLKD_TEST_START_DELAY_MS=5000\n' > /run/systemd/system/ublkd.service.d/slow.conf
systemctl daemon-reload
systemctl restart ublkd
ublkctl add null --size 16M --name slow --no-start > /dev/null
ublkctl start slow > start.out 2>&1 &
starting=$!
wait_until 2 busy || fail "stop of a starting device: $out"
t=$(date +%s%N)
systemctl stop ublkd
wait $starting || fail "the start under way when ublkd was stopped failed: $(cat start.out)"
echo "stop mid-start: the start completed and was answered, then ublkd stopped ($(ms_since "$t") ms)"
[ -z "$(ls /sys/class/ublk-char)" ] || fail "left in the kernel after stopping ublkd: $(ls /sys/class/ublk-char)"
echo ok
