#!/bin/bash
# Queue threads and their rings come and go with the device: for 1, 2 and 4 queues, ublkd has
# one thread and one io_uring per queue while the device lives, and exactly its baseline
# threads, fds and io_uring instances once the device is removed. 20 more add/remove cycles
# leave its RSS within 2 MiB of where it was.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
start_ublkd
pid=$(ublkd_pid)

threads() { threads_of "$pid"; }
fds() { fd_count "$pid"; }
rings() { find /proc/"$pid"/fd -lname 'anon_inode:\[io_uring\]' | wc -l; }
rss_kb() { awk '/^VmRSS:/ {print $2}' /proc/"$pid"/status; }
back_to_base() { [ "$(threads)" = "$base_threads" ] && [ "$(fds)" = "$base_fds" ] && [ "$(rings)" = 0 ]; }

base_threads=$(threads)
base_fds=$(fds)
[ "$(rings)" = 0 ] || fail "ublkd holds $(rings) io_uring instances with no device"
echo "baseline: $base_threads threads, $base_fds fds"

for q in 1 2 4; do
	dev=$(ublkctl add null --size 256M --queues "$q" --name "q$q")
	[ "$(threads)" = $((base_threads + q)) ] || fail "$q queues: $(threads) threads, expected $((base_threads + q))"
	[ "$(rings)" = "$q" ] || fail "$q queues: $(rings) io_uring instances, expected $q"
	[ "$(cat /sys/block/"${dev#/dev/}"/mq/*/nr_tags | wc -l)" = "$q" ] || fail "$q queues: the kernel shows another number of hw queues"
	dd if="$dev" of=/dev/null bs=64k count=256 iflag=direct status=none || fail "$q queues: read failed"
	ublkctl del "q$q"
	wait_until 5 back_to_base || fail "$q queues: after del: $(threads) threads, $(fds) fds, $(rings) rings; baseline $base_threads threads, $base_fds fds"
	echo "$q queue(s): $((base_threads + q)) threads and $q rings while live, baseline after del"
done

rss0=$(rss_kb)
for i in $(seq 20); do
	ublkctl add null --size 64M --queues 2 --name cycle > /dev/null
	ublkctl del cycle
done
wait_until 5 back_to_base || fail "after 20 cycles: $(threads) threads, $(fds) fds, $(rings) rings"
rss1=$(rss_kb)
echo "RSS over 20 add/del cycles: ${rss0} -> ${rss1} KiB"
ublkd_sanitized || [ $((rss1 - rss0)) -lt 2048 ] || fail "RSS grew by $((rss1 - rss0)) KiB over 20 cycles"
[ -z "$(ls /sys/class/ublk-char)" ] || fail "left behind: $(ls /sys/class/ublk-char)"
echo ok
