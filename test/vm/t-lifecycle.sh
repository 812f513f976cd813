#!/bin/bash
# A device's life through ublkctl and the bus: `ublkctl add loop IMG` gives a disk that takes a
# file system; stop and del refuse while it is mounted; stop, start and del round-trip with the
# data intact and the same /dev/ublkbN; each change is signalled (InterfacesAdded,
# PropertiesChanged, InterfacesRemoved). A client other than ublkctl passing a directory, a
# socket, a write-only or an O_PATH fd is refused by name; callers other than root may look
# but not touch without polkit's consent (t-users covers users in depth).
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
require_cmd jq mkfs.ext4 fsck.ext4 setpriv
start_ublkd
M=(org.ublk.ublkd1 /org/ublk/ublkd1 org.ublk.ublkd1.Manager)
scratch_ext4 /mnt/scratch 2G
truncate -s 256M /mnt/scratch/disk.img

# Every message from and to ublkd, as JSON lines, to check the signals at the end.
busctl --system monitor --json=short org.ublk.ublkd1 > monitor.json 2> /dev/null &
mon=$!
defer "kill $mon 2> /dev/null || true"
monitor_sees_calls() {
	busctl --system call "${M[@]}" ListDevices > /dev/null
	grep -q '"member":"ListDevices"' monitor.json
}
wait_until 10 monitor_sees_calls || fail "busctl monitor recorded nothing"

prop() { busctl --system get-property org.ublk.ublkd1 "$path" org.ublk.ublkd1.Device "$1"; }

# 1. add loop IMG: a file system with files on it
dev=$(ublkctl add loop /mnt/scratch/disk.img --name life)
id=${dev#/dev/ublkb}
path=/org/ublk/ublkd1/device/$id
mkfs.ext4 -q "$dev"
mkdir -p /mnt/life
mount "$dev" /mnt/life
defer "umount /mnt/life 2> /dev/null || true"
for i in $(seq 8); do head -c 1M /dev/urandom > /mnt/life/f$i; done
sums=$PWD/sums
(cd /mnt/life && sha256sum f*) > "$sums"
[ "$(prop Backing)" = 's "/mnt/scratch/disk.img"' ] || fail "Backing property: $(prop Backing)"
echo "add: $dev with ext4 and 8 files"

# 2. a mounted device is neither stopped nor removed
for cmd in stop del; do
	if out=$(ublkctl "$cmd" life 2>&1); then fail "ublkctl $cmd succeeded on a mounted device"; fi
	[ "$out" = "ublkctl: $cmd: $dev is in use (mounted, or held by another device): unmount it first" ] \
		|| fail "ublkctl $cmd on a mounted device: $out"
done
[ "$(prop State)" = 's "live"' ] || fail "state after refused stop: $(prop State)"
mountpoint -q /mnt/life || fail "unmounted by a refused stop"
cmp -s <(cd /mnt/life && sha256sum f*) "$sums" || fail "files changed by a refused stop"
echo "mounted: stop and del refused with 'unmount it first', nothing changed"

# 3. stop: the block device goes, the device stays with ublkd and keeps its id
umount /mnt/life
ublkctl stop life
wait_until 5 test ! -e "$dev" || fail "$dev still exists after stop"
ublkctl list | grep -Eq "^$id +life +loop +stopped +-$" || fail "list after stop: $(ublkctl list)"
[ "$(prop BlockDevice)" = 's ""' ] || fail "BlockDevice of a stopped device: $(prop BlockDevice)"
[ "$(prop CharDevice)" = "s \"/dev/ublkc$id\"" ] || fail "CharDevice of a stopped device: $(prop CharDevice)"
other=$(ublkctl add null --size 16M --name other)
[ "$other" != "$dev" ] || fail "a new device took the id of the stopped one"
if out=$(ublkctl stop life 2>&1); then fail "stop of a stopped device succeeded"; fi
[[ $out == *"is not live"* ]] || fail "stop of a stopped device: $out"
if out=$(ublkctl recover life 2>&1); then fail "recover of a stopped device succeeded"; fi
[[ $out == *"nothing to recover (use Start)"* ]] || fail "recover of a stopped device: $out"
echo "stop: $dev gone, state stopped, its id kept (a new device got $other); a second stop and a recover refused"

# 4. start: the same node, the same data
ublkctl start life
wait_until 10 test -b "$dev" || fail "$dev did not come back after start"
fsck.ext4 -fn "$dev" > fsck.log 2>&1 || { cat fsck.log; fail "fsck after stop/start"; }
mount "$dev" /mnt/life
(cd /mnt/life && sha256sum -c --quiet "$sums") || fail "checksums differ after stop/start"
umount /mnt/life
if out=$(ublkctl start life 2>&1); then fail "start of a live device succeeded"; fi
[[ $out == *"is live already"* ]] || fail "start of a live device: $out"
ublkctl del other
echo "start: $dev back, fsck clean, 8 checksums equal"

# 5. del, and the signals of the whole life
ublkctl del life
wait_until 5 test ! -e /sys/class/ublk-char/ublkc"$id" || fail "ublkc$id left after del"
om_signals() {          # the ObjectManager signals about device object $path
	jq -c --arg p "$path" 'select(.type == "signal" and .payload.data[0] == $p) | .member' monitor.json \
		| tr -d '"' | paste -sd' '
}
has_removed() { [[ $(om_signals) == *InterfacesRemoved* ]]; }
wait_until 5 has_removed || fail "no InterfacesRemoved: $(om_signals)"
[ "$(om_signals)" = "InterfacesAdded InterfacesRemoved" ] || fail "ObjectManager signals: $(om_signals)"
states=$(jq -c --arg p "$path" 'select(.member == "PropertiesChanged" and .path == $p) | .payload.data[1].State.data' monitor.json | tr -d '"' | paste -sd' ')
[ "$states" = "stopped live" ] || fail "PropertiesChanged State values: '$states', expected 'stopped live'"
echo "signals: InterfacesAdded, PropertiesChanged State stopped then live, InterfacesRemoved"

# 6. backing fds a client other than ublkctl may pass
n=0
before=$(busctl --system call "${M[@]}" ListDevices)
refused_fd() {          # refused_fd EXPECTED ARGS...: bus-add.py must fail with that message
	local want=$1 out
	shift
	if out=$("$UBLKD_SRC"/test/vm/bus-add.py "$@"); then fail "accepted: bus-add.py $*"; fi
	[[ $out == *"$want"* ]] || fail "bus-add.py $*: expected '$want', got: $out"
	[ "$(busctl --system call "${M[@]}" ListDevices)" = "$before" ] || fail "state changed after: $*"
	n=$((n + 1))
}
refused_fd "InvalidArgs: The backing fd is neither a regular file nor a block device" loop --fd 3 3< /mnt/scratch
refused_fd "InvalidArgs: The backing fd is neither a regular file nor a block device" loop --socket
refused_fd "InvalidArgs: The backing fd is open write-only" loop --fd 3 3>> /mnt/scratch/disk.img
refused_fd "InvalidArgs: The backing fd is an O_PATH descriptor" loop --opath /mnt/scratch/disk.img
refused_fd "InvalidArgs: Option 'backing' must be of type 'h', not 's'" loop backing=s:/mnt/scratch/disk.img
out=$("$UBLKD_SRC"/test/vm/bus-add.py loop --fd 3 name=s:viafd 3< /mnt/scratch/disk.img) || fail "read-only fd: $out"
[ "$(busctl --system get-property org.ublk.ublkd1 "${out#* }" org.ublk.ublkd1.Device ReadOnly)" = "b true" ] \
	|| fail "a device on a read-only fd is not read-only"
ublkctl del viafd
echo "fds: $n bad backing fds refused by name; a read-only fd makes a read-only device"

# 7. other users may look, not touch
ublkctl add null --size 16M --name mine > /dev/null
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
as_nobody ublkctl list | grep -q ' mine ' || fail "nobody cannot list devices"
as_nobody ublkctl show mine > /dev/null || fail "nobody cannot show a device"
for cmd in "add null --size 16M" "stop mine" "start mine" "del mine" "recover mine"; do
	# shellcheck disable=SC2086
	if out=$(as_nobody ublkctl $cmd 2>&1); then fail "nobody may: ublkctl $cmd"; fi
	# No session, so polkit would want a password; without a terminal nobody cannot give one.
	[[ $out == *"Authentication is required to "*"(polkit action org.ublk.ublkd1."* ]] \
		|| fail "nobody: ublkctl $cmd: $out"
done
# busctl prints only "Access denied" for this error; bus-add.py shows name and message.
if out=$(as_nobody "$UBLKD_SRC"/test/vm/bus-add.py null size=t:4096); then fail "nobody may call Add"; fi
[[ $out == "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired: Authentication is required to add devices"* ]] \
	|| fail "nobody: Add: $out"
[ "$(ublkctl list | grep -c ' mine ')" = 1 ] || fail "device list changed"
ublkctl del mine
echo "nobody: list and show allowed; add, start, stop, recover, del refused (polkit wants a password)"
echo ok
