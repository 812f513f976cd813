#!/bin/bash
# Users other than root (issue 5): a user whom a polkit rule grants org.ublk.ublkd1.add-device
# (group ublk-users) creates a loop device on a file of their own with plain ublkctl; the kernel
# makes it theirs, and udev has given them the block device (the char device stays root's and
# they cannot open it) by the time ublkctl returns, so they do IO (fio verify), mkfs and fsck
# on it as themselves. Another user can neither open it nor stop, remove or see its backing
# file; root can. A user polkit does not authorize is refused and nothing is created (by
# default, every user but root: add-device asks for the administrator's password even in an
# active session); the per-user limits of ublkd (--user-max-devices,
# --user-max-queue-memory) refuse the next Add by name; a user's device names start with
# "USER:". On a terminal, ublkctl runs a polkit agent that asks for a password.
# /dev/ublk-control stays root's.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
require_cmd fio mkfs.ext4 fsck.ext4 useradd runuser jq
load_ublk_driver
install_ublkd

# ublkd with small per-user limits, through a drop-in as an admin would write it.
mkdir -p /run/systemd/system/ublkd.service.d
cat > /run/systemd/system/ublkd.service.d/50-limits.conf <<EOT
[Service]
ExecStart=
ExecStart=$(command -v ublkd) --user-max-devices=2 --user-max-queue-memory=256M
EOT
defer "rm -rf /run/systemd/system/ublkd.service.d; systemctl daemon-reload"
systemctl daemon-reload
start_ublkd
(( $(ublkctl features) & 0x20 )) || skip "the kernel's ublk has no UBLK_F_UNPRIVILEGED_DEV"

# Users: alice and bob may add devices (polkit rule for group ublk-users), carol may not.
polkit_grant_add_device alice bob
id carol > /dev/null 2>&1 || useradd -m carol
n_devices() { ublkctl --json list | jq length; }

# 1. /dev/ublk-control is root's: users create devices through ublkd only.
[ "$(stat -c '%U %a' /dev/ublk-control)" = "root 600" ] || fail "/dev/ublk-control: $(stat -c '%U %a' /dev/ublk-control)"
if as alice sh -c 'exec 3<> /dev/ublk-control' 2> /dev/null; then fail "alice opened /dev/ublk-control"; fi
echo "/dev/ublk-control: root 0600, alice cannot open it"

# 2. alice adds a loop device on her own file; it is hers as soon as ublkctl returns.
as alice truncate -s 256M /home/alice/img
dev=$(as alice ublkctl add loop /home/alice/img --name alice:disk) || fail "alice could not add a device"
id=${dev#/dev/ublkb}
[ "$(stat -c '%U %G %a' "$dev")" = "alice alice 600" ] || fail "$dev right after add: $(stat -c '%U %G %a' "$dev")"
[ "$(stat -c '%U %G %a' "/dev/ublkc$id")" = "root root 600" ] \
	|| fail "/dev/ublkc$id right after add: $(stat -c '%U %G %a' "/dev/ublkc$id")"
if as alice sh -c "exec 3< /dev/ublkc$id" 2> /dev/null; then fail "alice opened /dev/ublkc$id"; fi
[ "$(readlink -f /dev/ublk/by-name/alice:disk)" = "$dev" ] || fail "no by-name link for alice:disk"
show=$(ublkctl --json show alice:disk)
[ "$(jq .OwnerUID <<< "$show")" = "$(id -u alice)" ] || fail "OwnerUID: $show"
(( $(jq .Flags <<< "$show") & 0x20 )) || fail "not an unprivileged device in the kernel: $show"
echo "alice: $dev is alice:alice 0600 when ublkctl returns, /dev/ublkc$id root:root 0600 (alice cannot open it); the kernel has it unprivileged"

# 3. alice does IO as herself: fio with crc32c verify, then mkfs and fsck, no mount.
as alice sh -c "cd /home/alice && fio --name=verify --filename=$dev --rw=randwrite --bs=4k --size=64M \
	--ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c --verify_fatal=1 --verify_state_save=0 \
	--output-format=json --output=fio.json" || fail "fio as alice failed: $(tail -n 5 /home/alice/fio.json)"
errs=$(jq '.jobs[0].error' /home/alice/fio.json)
[ "$errs" = 0 ] || fail "fio as alice: error $errs"
as alice mkfs.ext4 -q -F -L alicefs "$dev" || fail "mkfs.ext4 as alice failed"
as alice fsck.ext4 -fn "$dev" > /dev/null 2>&1 || fail "fsck.ext4 -n as alice found problems"
[ "$(as alice blkid -c /dev/null -s LABEL -o value "$dev")" = alicefs ] || fail "label not read back"
echo "alice: fio verify (64M, crc32c) clean, mkfs.ext4 + fsck -n clean, as alice"

# 4. bob (also allowed to add devices) cannot touch alice's.
if as bob dd if="$dev" of=/dev/null bs=4k count=1 2> /dev/null; then fail "bob read alice's device"; fi
for cmd in stop del; do
	if out=$(as bob ublkctl "$cmd" alice:disk 2>&1); then fail "bob could $cmd alice's device"; fi
	[[ $out == *"Authentication is required to "*"device $id of uid $(id -u alice)"*"manage-other-devices"* ]] \
		|| fail "bob: ublkctl $cmd: $out"
done
[ "$(ublkctl --json show alice:disk | jq -r .State)" = live ] || fail "alice's device changed by bob's calls"
out=$(as bob ublkctl show alice:disk) || fail "bob cannot show alice's device"
grep -q '^Backing  *(hidden: not your device)$' <<< "$out" || fail "bob sees Backing: $(grep Backing <<< "$out")"
if out=$(as bob busctl --system get-property org.ublk.ublkd1 "/org/ublk/ublkd1/device/$id" \
	org.ublk.ublkd1.Device Backing 2>&1); then fail "bob read Backing over the bus: $out"; fi
[ "$(as alice ublkctl --json show alice:disk | jq -r .Backing)" = /home/alice/img ] || fail "alice cannot see her Backing"
[ "$(ublkctl --json show alice:disk | jq -r .Backing)" = /home/alice/img ] || fail "root cannot see Backing"
dd if="$dev" of=/dev/null bs=4k count=1 2> /dev/null || fail "root cannot read alice's device"
echo "bob: cannot open $dev, stop or del it (polkit wants admin), or read its Backing; root can read both"

# 5. alice stops and starts her own device without polkit; it is still hers after.
as alice ublkctl stop alice:disk || fail "alice could not stop her device"
as alice ublkctl start alice:disk || fail "alice could not start her device"
[ "$(stat -c '%U %G %a' "$dev")" = "alice alice 600" ] || fail "$dev after restart: $(stat -c '%U %G %a' "$dev")"
as alice fsck.ext4 -fn "$dev" > /dev/null 2>&1 || fail "fsck after stop/start found problems"
echo "alice: stop + start her own device, still alice's, fsck clean"

# 5b. A restart of ublkd: the kernel does not recover users' devices, so alice's comes back
# stopped, still hers, under the same id; she starts it again and her file system is intact.
old_pid=$(ublkd_pid)
systemctl restart ublkd
taken_over() { ublkd_replaced "$old_pid" && ublkctl show alice:disk > /dev/null 2>&1; }
wait_until 30 taken_over || fail "alice's device not back after a restart of ublkd: $(ublkctl list 2>&1)"
show=$(ublkctl --json show alice:disk)
[ "$(jq -r .State <<< "$show")" = stopped ] || fail "alice's device after a restart: $show"
[ "$(jq .OwnerUID <<< "$show")" = "$(id -u alice)" ] || fail "OwnerUID after a restart: $show"
[ "$(jq .Id <<< "$show")" = "$id" ] || fail "alice's device is $(jq .Id <<< "$show") after a restart, was $id"
wait_until 5 test ! -e "$dev" || fail "$dev still there while alice's device is stopped"
as alice ublkctl start alice:disk || fail "alice could not start her device after a restart of ublkd"
[ "$(stat -c '%U %G %a' "$dev")" = "alice alice 600" ] || fail "$dev after a restart of ublkd: $(stat -c '%U %G %a' "$dev")"
[ "$(stat -c '%U %G %a' "/dev/ublkc$id")" = "root root 600" ] || fail "/dev/ublkc$id after a restart of ublkd: $(stat -c '%U %G %a' "/dev/ublkc$id")"
as alice fsck.ext4 -fn "$dev" > /dev/null 2>&1 || fail "fsck after a restart of ublkd found problems"
[ "$(as alice blkid -c /dev/null -s LABEL -o value "$dev")" = alicefs ] || fail "label lost across a restart of ublkd"
echo "restart of ublkd: alice's device came back stopped, hers, same id $id; she started it; fsck clean, label kept"

# 6. names: a user's devices are named USER:NAME
before=$(n_devices)
if out=$(as alice ublkctl add null --size 16M --name data 2>&1); then fail "alice took the name 'data'"; fi
[[ $out == *"Names of alice's devices are 'alice:NAME'"* ]] || fail "alice, name data: $out"
[ "$(n_devices)" = "$before" ] || fail "a refused name left a device"
echo "names: alice may not take 'data': $out"

# 7. limits: 2 devices, 256 MiB of IO buffers per user
dev2=$(as alice ublkctl add null --size 16M) || fail "alice's second device refused"
if out=$(as alice ublkctl add null --size 16M 2>&1); then fail "alice got a third device"; fi
[[ $out == *"has 2 device(s), the most ublkd allows a user (2, ublkd --user-max-devices)"* ]] || fail "third device: $out"
as alice ublkctl del "${dev2#/dev/ublkb}"
if out=$(as alice ublkctl add null --size 16M --queues 1 --depth 4096 2>&1); then fail "alice got 2 GiB of queues"; fi
[[ $out == *"need 2048 MiB of IO buffers"*"ublkd --user-max-queue-memory"* ]] || fail "big queues: $out"
[ "$(n_devices)" = "$before" ] || fail "refused adds left devices"
echo "limits: third device and a 2 GiB queue refused by name"

# 8. carol, whom no rule grants, is refused and nothing is created
as carol truncate -s 64M /home/carol/img
if out=$(as carol ublkctl add loop /home/carol/img 2>&1); then fail "carol could add a device"; fi
[[ $out == *"Authentication is required to add devices (polkit action org.ublk.ublkd1.add-device)"* ]] \
	|| fail "carol: $out"
[ "$(n_devices)" = "$before" ] || fail "carol's refused add left a device"
# The shipped default asks for the administrator's password even in an active session.
implicit=$(pkaction --action-id org.ublk.ublkd1.add-device --verbose | sed -En 's/^ *implicit (any|inactive|active): *//p' | xargs)
[ "$implicit" = "auth_admin auth_admin auth_admin_keep" ] || fail "add-device defaults (any, inactive, active): $implicit"
echo "carol: refused ($out); add-device defaults to $implicit (any, inactive, active)"

# 9. on a terminal, ublkctl runs a polkit text agent: carol types the administrator's password
cp /etc/shadow shadow.saved
defer "cp shadow.saved /etc/shadow"
echo 'root:ublk-test-pw' | chpasswd
cat > /etc/polkit-1/rules.d/10-ublk-test-admin.rules <<'EOT'
polkit.addAdminRule(function(action, subject) { return ["unix-user:root"]; });
EOT
defer "rm -f /etc/polkit-1/rules.d/10-ublk-test-admin.rules"
systemctl restart polkit
out=$("$UBLKD_SRC"/test/vm/pty-answer.py "Password:" ublk-test-pw 60 \
	setpriv --reuid=carol --regid=carol --init-groups ublkctl add null --size 16M --name carol:tty) || fail "carol on a terminal (rc $?): $out"
# (setpriv, not runuser: "runuser -u" starts a new session, without the terminal.)
[[ $out == *"AUTHENTICATING FOR org.ublk.ublkd1.add-device"* ]] || fail "no polkit prompt on carol's terminal: $out"
dev3=$(grep -o '/dev/ublkb[0-9]*' <<< "$out" | tail -n 1)
[ "$(stat -c '%U %a' "$dev3")" = "carol 600" ] || fail "$dev3 after an interactive add: $(stat -c '%U %a' "$dev3")"
ublkctl del carol:tty
echo "carol on a terminal: pkttyagent asked for root's password, the device is carol's"

# 10. root removes alice's device; udev and /run keep nothing of it
ublkctl del alice:disk
wait_until 5 test ! -e "$dev" || fail "$dev left after del"
[ "$(n_devices)" = 0 ] || fail "devices left: $(ublkctl list)"
echo ok
