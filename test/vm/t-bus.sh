#!/bin/bash
# The D-Bus API on a real system bus: bus activation starts ublkd, the live introspection data
# matches dbus/*.xml, busctl alone can create, inspect and remove a device, and bad input gets a
# one-line error naming the problem while nothing changes.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
load_ublk_driver
install_ublkd
B=(busctl --system)
M=(org.ublk.ublkd1 /org/ublk/ublkd1 org.ublk.ublkd1.Manager)

# 1. bus activation: with ublkd stopped, a call starts it
systemctl stop ublkd
ublkctl list > /dev/null || fail "ublkctl list did not activate ublkd"
systemctl is-active -q ublkd || fail "ublkd.service is not active after a call"
echo "bus activation: ublkd.service started by a call"

# 2. introspection matches the documented interfaces
dev=$(ublkctl add null --size 64M --name intro)
id=${dev#/dev/ublkb}
"${B[@]}" introspect --xml-interface org.ublk.ublkd1 /org/ublk/ublkd1 > manager.xml
"${B[@]}" introspect --xml-interface org.ublk.ublkd1 /org/ublk/ublkd1/device/"$id" > device.xml
"$UBLKD_SRC/test/vm/introspect-check.py" manager.xml "$UBLKD_SRC/dbus/org.ublk.ublkd1.Manager.xml" \
	org.ublk.ublkd1.Manager || fail "Manager interface differs from dbus/org.ublk.ublkd1.Manager.xml"
"$UBLKD_SRC/test/vm/introspect-check.py" device.xml "$UBLKD_SRC/dbus/org.ublk.ublkd1.Device.xml" \
	org.ublk.ublkd1.Device || fail "Device interface differs from dbus/org.ublk.ublkd1.Device.xml"
grep -q 'org.freedesktop.DBus.ObjectManager' manager.xml || fail "no ObjectManager at the manager path"
echo "introspection: Manager and Device match dbus/*.xml"
systemctl show -P StatusText ublkd | grep -qx "Serving 1 device (1 live)." || fail "status: $(systemctl show -P StatusText ublkd)"
ublkctl del intro

# 3. busctl alone drives Add, the properties, ListDevices, GetDeviceByName and Remove
out=$("${B[@]}" call "${M[@]}" Add 'sa{sv}' null 3 size t 67108864 name s viabus queues u 1)
[[ $out =~ ^uo\ ([0-9]+)\ \"(/org/ublk/ublkd1/device/[0-9]+)\"$ ]] || fail "Add replied '$out'"
id=${BASH_REMATCH[1]} path=${BASH_REMATCH[2]}
[ "$("${B[@]}" get-property org.ublk.ublkd1 "$path" org.ublk.ublkd1.Device Size)" = "t 67108864" ] || fail "Size property"
[ "$("${B[@]}" get-property org.ublk.ublkd1 "$path" org.ublk.ublkd1.Device State)" = 's "live"' ] || fail "State property"
[ "$("${B[@]}" call "${M[@]}" GetDeviceByName s viabus)" = "o \"$path\"" ] || fail "GetDeviceByName"
"${B[@]}" call "${M[@]}" ListDevices | grep -q "\"viabus\" \"null\" \"live\" \"/dev/ublkb$id\"" || fail "ListDevices"
"${B[@]}" call org.ublk.ublkd1 "$path" org.ublk.ublkd1.Device Remove || fail "Remove"
# the removed object is gone (checked before any new device can take its id again)
if out=$("${B[@]}" call org.ublk.ublkd1 "$path" org.ublk.ublkd1.Device Remove 2>&1); then
	fail "Remove on a removed device object succeeded"
fi
[[ $out == *"Unknown object"* ]] || fail "call on a removed object: $out"
if out=$("${B[@]}" get-property org.ublk.ublkd1 "$path" org.ublk.ublkd1.Device State 2>&1); then
	fail "property of a removed device object readable"
fi
# ... and Start, Stop and Recover, on a device added with start=false
out=$("${B[@]}" call "${M[@]}" Add 'sa{sv}' null 2 size t 67108864 start b false)
path=${out#* \"}
path=${path%\"}
D=(org.ublk.ublkd1 "$path" org.ublk.ublkd1.Device)
id=${path##*/}
[ "$("${B[@]}" get-property "${D[@]}" State BlockDevice CharDevice | paste -sd' ')" = "s \"stopped\" s \"\" s \"/dev/ublkc$id\"" ] \
	|| fail "added with start=false: $("${B[@]}" get-property "${D[@]}" State BlockDevice CharDevice | paste -sd' ')"
"${B[@]}" call "${D[@]}" Start || fail "Start"
[ "$("${B[@]}" get-property "${D[@]}" State BlockDevice | paste -sd' ')" = "s \"live\" s \"/dev/ublkb$id\"" ] || fail "after Start"
test -b /dev/ublkb"$id" || fail "no /dev/ublkb$id after Start"
if out=$("${B[@]}" call "${D[@]}" Recover 2>&1); then fail "Recover of a live device succeeded"; fi
[[ $out == *"not quiesced: there is nothing to recover"* ]] || fail "Recover: $out"
"${B[@]}" call "${D[@]}" Stop || fail "Stop"
[ "$("${B[@]}" get-property "${D[@]}" State BlockDevice CharDevice | paste -sd' ')" = "s \"stopped\" s \"\" s \"/dev/ublkc$id\"" ] \
	|| fail "after Stop: $("${B[@]}" get-property "${D[@]}" State BlockDevice CharDevice | paste -sd' ')"
"${B[@]}" call "${D[@]}" Start || fail "Start after Stop"
"${B[@]}" call "${D[@]}" Remove || fail "Remove"
echo "busctl: Add, properties, GetDeviceByName, ListDevices, Start, Stop, Recover, Remove; a removed object answers 'Unknown object'"

# 4. bad input: each call fails with the expected message, and nothing changes
ublkctl add null --size 64M --name keep > /dev/null
before=$("${B[@]}" call "${M[@]}" ListDevices)
refused() {     # refused EXPECTED-MESSAGE-PART ARGS...: the call must fail with that message
	local want=$1 out
	shift
	if out=$("${B[@]}" call "$@" 2>&1); then fail "accepted: $*"; fi
	[[ $out == *"$want"* ]] || fail "for '$*': expected '$want', got: $out"
	[ "$("${B[@]}" call "${M[@]}" ListDevices)" = "$before" ] || fail "state changed after: $*"
	n=$((n + 1))
}
n=0
refused "Unknown target 'iscsi'" "${M[@]}" Add 'sa{sv}' iscsi 1 size t 4096
refused "Unknown option 'colour'" "${M[@]}" Add 'sa{sv}' null 2 size t 4096 colour s red
refused "Option 'size' must be of type 't', not 's'" "${M[@]}" Add 'sa{sv}' null 1 size s 1G
refused "Option 'size' given twice" "${M[@]}" Add 'sa{sv}' null 2 size t 4096 size t 8192
refused "needs a size" "${M[@]}" Add 'sa{sv}' null 0
refused "needs a size" "${M[@]}" Add 'sa{sv}' null 1 size t 0
refused "size is larger than 1 EiB" "${M[@]}" Add 'sa{sv}' null 1 size t 18446744073709551104
refused "multiple of the logical block size" "${M[@]}" Add 'sa{sv}' null 1 size t 1000
refused "queues must be between 1 and" "${M[@]}" Add 'sa{sv}' null 2 size t 4096 queues u 0
refused "queues must be between 1 and" "${M[@]}" Add 'sa{sv}' null 2 size t 4096 queues u 100000
refused "depth must be between 1 and 4096" "${M[@]}" Add 'sa{sv}' null 2 size t 4096 depth u 0
refused "depth must be between 1 and 4096" "${M[@]}" Add 'sa{sv}' null 2 size t 4096 depth u 4097
refused "logical-block-size must be" "${M[@]}" Add 'sa{sv}' null 2 size t 4096 logical-block-size u 1000
refused "exists already" "${M[@]}" Add 'sa{sv}' null 2 size t 4096 name s keep
refused "Invalid name" "${M[@]}" Add 'sa{sv}' null 2 size t 4096 name s ../etc
refused "Invalid name" "${M[@]}" Add 'sa{sv}' null 2 size t 4096 name s "$(head -c 100 /dev/zero | tr '\0' x)"
refused "not valid for target 'null'" "${M[@]}" Add 'sa{sv}' null 2 size t 4096 offset t 0
refused "needs a backing file" "${M[@]}" Add 'sa{sv}' loop 1 size t 4096
refused "must be 'auto', 'on' or 'off'" "${M[@]}" Add 'sa{sv}' loop 1 direct-io s maybe
refused "No such device: 4242" "${M[@]}" GetDevice u 4242
refused "No such device: 'nope'" "${M[@]}" GetDeviceByName s nope
refused "Unknown object" org.ublk.ublkd1 /org/ublk/ublkd1/device/4242 org.ublk.ublkd1.Device Remove
refused "Unknown object" org.ublk.ublkd1 /org/ublk/ublkd1/device/abc org.ublk.ublkd1.Device Remove
echo "bad input: $n calls refused with a clear message, device list unchanged"
systemctl is-active -q ublkd || fail "ublkd died"
ublkctl del keep
echo ok
