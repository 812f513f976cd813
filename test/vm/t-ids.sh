#!/bin/bash
# Device ids under concurrent clients: one device is stopped and started over and over (a
# stop takes it out of the kernel and adds it again under its id) while three clients each
# add and remove a device of their own, and two more list the devices all along.  Every call
# returns within its bound, the stopped device always comes back under its id, and no two
# devices share an id.  Before ublkd picked ids itself (src/daemon/ids.h), ADD_DEV's "any
# id" could hand an Add the id of a device being stopped or removed: on the in-tree driver
# (7.x) this failed within seconds (the stopped device could not start again, two devices
# listed under one id, a removal that never returned).  An Add skips ids that another
# program's device has.  The loops count rounds, not time: each goes on until every loop has
# done its rounds (and for at least T_IDS_SECONDS), so a slow machine only makes it longer.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
start_ublkd
# Every loop goes round at least $rounds times, and all go on for at least $seconds.
rounds=${T_IDS_ROUNDS:-5}
seconds=${T_IDS_SECONDS:-40}
bound=$((30 * TIME_FACTOR))
dir=$PWD/ids
mkdir -p "$dir"

dev=$(ublkctl add null --size 16M --name A)
a_id=${dev#/dev/ublkb}

# Another program's device has the next id: ublkd's Add goes on to the one after it.
build_kmod_perm
out=$(./kmod-perm add 0 noflag) || fail "kmod-perm add: exit $?"
other=${out%% *}
[ "$other" -ge 0 ] 2> /dev/null || fail "kmod-perm could not add a device: $out"
# Only while it is the other program's: once deleted, the id may be one of ublkd's devices'.
defer 'if [ -n "$other" ]; then ./kmod-perm cmd 0 del "$other" > /dev/null; fi'
[ "$other" = $((a_id + 1)) ] || fail "another program's device got id $other, not $((a_id + 1))"
dev=$(ublkctl add null --size 16M --name C)
[ "$dev" = "/dev/ublkb$((other + 1))" ] || fail "Add beside another program's device $other: $dev"
ublkctl del C
[ "$(./kmod-perm cmd 0 del "$other")" = 0 ] || fail "deleting the other program's device $other"
echo "another program's device had id $other: Add got $dev"
other=

no_shared_ids() {
	local list dups
	list=$(timeout $bound ublkctl list) || { echo "list: rc=$?"; return 1; }
	dups=$(awk 'NR > 1 { print $1 }' <<< "$list" | sort | uniq -d)
	[ -z "$dups" ] || { echo "ids listed twice: $dups"; echo "$list"; return 1; }
}

# Each loop writes its rounds so far to $dir/NAME.n, its count to $dir/NAME when it ends well,
# or why it stopped to $dir/NAME.failed (and $dir/stop, which ends the others too).
workers="A B1 B2 B3"
# go_on END: another round? Yes while some loop has done fewer than $rounds rounds or $seconds
# have not passed: the loops overlap until the slowest has done its share, however slow the
# machine (a count of work done, never a rate: each call is bounded by $bound instead).
go_on() {
	local w n
	[ ! -e "$dir/stop" ] || return 1
	[ "$(date +%s)" -ge "$1" ] || return 0
	for w in $workers; do
		n=$(cat "$dir/$w.n" 2> /dev/null) || n=0
		[ "${n:-0}" -ge "$rounds" ] || return 0
	done
	return 1
}
stop_all() { touch "$dir/stop"; }
restart_a() {
	local n=0 end=$(($(date +%s) + seconds))
	while go_on $end; do
		timeout $bound ublkctl stop A || { echo "stop A: rc=$?"; stop_all; return 1; }
		timeout $bound ublkctl start A || { echo "start A: rc=$?"; ublkctl list; stop_all; return 1; }
		timeout $bound ublkctl list | grep -Eq "^$a_id +A +null +live +/dev/ublkb$a_id\$" \
			|| { echo "A is not live under id $a_id:"; ublkctl list; stop_all; return 1; }
		n=$((n + 1))
		echo $n > "$dir/A.n"
	done
	[ ! -e "$dir/stop" ] || { echo "stopped after $n rounds: another loop failed"; return 1; }
	echo $n > "$dir/A"
}
add_remove_b() {
	local k=$1 n=0 end=$(($(date +%s) + seconds)) d
	while go_on $end; do
		d=$(timeout $bound ublkctl add null --size 16M --name "B$k") || { echo "add B$k: rc=$?"; stop_all; return 1; }
		[ "$d" != "/dev/ublkb$a_id" ] || { echo "B$k got A's id: $d"; stop_all; return 1; }
		no_shared_ids || { stop_all; return 1; }
		timeout $bound ublkctl del "B$k" || { echo "del B$k: rc=$?"; ublkctl list; stop_all; return 1; }
		n=$((n + 1))
		echo $n > "$dir/B$k.n"
	done
	[ ! -e "$dir/stop" ] || { echo "stopped after $n rounds: another loop failed"; return 1; }
	echo $n > "$dir/B$k"
}

# Two more clients list the devices without pause, so that the event loop reads every device
# while the removals' works end (a removal once freed its device there before the loop let go
# of it: ASan saw the use after free within seconds). They list until the loops above are done.
lister() {
	python3 -c '
import dbus, os, sys
m = dbus.Interface(dbus.SystemBus().get_object("org.ublk.ublkd1", "/org/ublk/ublkd1"),
                   "org.ublk.ublkd1.Manager")
n = 0
while not os.path.exists(sys.argv[1]):
    m.ListDevices()
    n += 1
print(n)' "$dir/listers-stop"
}
lister > "$dir/L1" 2> "$dir/L1.failed" &
l1=$!
lister > "$dir/L2" 2> "$dir/L2.failed" &
l2=$!
restart_a > "$dir/A.failed" 2>&1 &
pids=$!
for k in 1 2 3; do
	add_remove_b $k > "$dir/B$k.failed" 2>&1 &
	pids="$pids $!"
done
# Each says how it ended in its files, checked below.
wait $pids || true
touch "$dir/listers-stop"
wait $l1 $l2 || true

for who in $workers L1 L2; do
	[ -s "$dir/$who" ] || fail "$who: $(tail -n 3 "$dir/$who.failed" | tr '\n' ' ')"
done
echo "A stopped and started $(cat "$dir/A") times, B1-B3 added and removed" \
	"$(cat "$dir/B1") $(cat "$dir/B2") $(cat "$dir/B3") times, $(cat "$dir/L1") and $(cat "$dir/L2") lists"
# Fewer would not have raced: each loop must have turned over $rounds times while the others ran.
for who in $workers; do
	[ "$(cat "$dir/$who")" -ge "$rounds" ] || fail "$who went round $(cat "$dir/$who") times, not $rounds"
done
ublkctl list | grep -Eq "^$a_id +A +null +live" || fail "A at the end: $(ublkctl list)"
[ "$(ublkctl list | awk 'NR > 1' | wc -l)" = 1 ] || fail "devices left besides A: $(ublkctl list)"
no_shared_ids || fail "ids listed twice at the end"
ublkctl del A
[ "$(ublkctl list | awk 'NR > 1' | wc -l)" = 0 ] || fail "devices left: $(ublkctl list)"
echo "no id shared or taken, every call within ${bound} s"
