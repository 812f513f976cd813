#!/bin/bash
# Device ids under concurrent clients: one device is stopped and started over and over (a
# stop takes it out of the kernel and adds it again under its id) while three clients each
# add and remove a device of their own, and two more list the devices all along.  Every call
# returns within its bound, the stopped device always comes back under its id, and no two
# devices share an id.  Before ublkd picked ids itself (src/daemon/ids.h), ADD_DEV's "any
# id" could hand an Add the id of a device being stopped or removed: on the in-tree driver
# (7.x) this failed within seconds (the stopped device could not start again, two devices
# listed under one id, a removal that never returned).  An Add skips ids that another
# program's device has.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
start_ublkd
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

# Each loop writes its cycle count to $dir/NAME, or why it stopped to $dir/NAME.failed.
restart_a() {
	local n=0 end=$((SECONDS + seconds))
	while [ $SECONDS -lt $end ]; do
		timeout $bound ublkctl stop A || { echo "stop A: rc=$?"; return 1; }
		timeout $bound ublkctl start A || { echo "start A: rc=$?"; ublkctl list; return 1; }
		timeout $bound ublkctl list | grep -Eq "^$a_id +A +null +live +/dev/ublkb$a_id\$" \
			|| { echo "A is not live under id $a_id:"; ublkctl list; return 1; }
		n=$((n + 1))
	done
	echo $n > "$dir/A"
}
add_remove_b() {
	local k=$1 n=0 end=$((SECONDS + seconds)) d
	while [ $SECONDS -lt $end ]; do
		d=$(timeout $bound ublkctl add null --size 16M --name "B$k") || { echo "add B$k: rc=$?"; return 1; }
		[ "$d" != "/dev/ublkb$a_id" ] || { echo "B$k got A's id: $d"; return 1; }
		no_shared_ids || return 1
		timeout $bound ublkctl del "B$k" || { echo "del B$k: rc=$?"; ublkctl list; return 1; }
		n=$((n + 1))
	done
	echo $n > "$dir/B$k"
}

# Two more clients list the devices without pause, so that the event loop reads every device
# while the removals' works end (a removal once freed its device there before the loop let go
# of it: ASan saw the use after free within seconds).
lister() {
	python3 -c '
import dbus, sys, time
m = dbus.Interface(dbus.SystemBus().get_object("org.ublk.ublkd1", "/org/ublk/ublkd1"),
                   "org.ublk.ublkd1.Manager")
end, n = time.monotonic() + float(sys.argv[1]), 0
while time.monotonic() < end:
    m.ListDevices()
    n += 1
print(n)' "$seconds"
}
lister > "$dir/L1" 2> "$dir/L1.failed" &
lister > "$dir/L2" 2> "$dir/L2.failed" &
restart_a > "$dir/A.failed" 2>&1 &
for k in 1 2 3; do
	add_remove_b $k > "$dir/B$k.failed" 2>&1 &
done
# Each says how it ended in its files, checked below.
wait

for who in A B1 B2 B3 L1 L2; do
	[ -s "$dir/$who" ] || fail "$who: $(tail -n 3 "$dir/$who.failed" | tr '\n' ' ')"
done
echo "in ${seconds} s: A stopped and started $(cat "$dir/A") times, B1-B3 added and removed" \
	"$(cat "$dir/B1") $(cat "$dir/B2") $(cat "$dir/B3") times, $(cat "$dir/L1") and $(cat "$dir/L2") lists"
# Fewer would not have raced: each loop must have turned over more than a few times.
for who in A B1 B2 B3; do
	[ "$(cat "$dir/$who")" -ge 5 ] || fail "$who went round only $(cat "$dir/$who") times in ${seconds} s"
done
ublkctl list | grep -Eq "^$a_id +A +null +live" || fail "A at the end: $(ublkctl list)"
[ "$(ublkctl list | awk 'NR > 1' | wc -l)" = 1 ] || fail "devices left besides A: $(ublkctl list)"
no_shared_ids || fail "ids listed twice at the end"
ublkctl del A
[ "$(ublkctl list | awk 'NR > 1' | wc -l)" = 0 ] || fail "devices left: $(ublkctl list)"
echo "no id shared or taken, every call within ${bound} s"
