#!/bin/bash
# What a polkit-authorized user must not be able to do to the root daemon (issue 28), each
# tried as the user would:
#  1. signal or prlimit a thread of ublkd while their Adds run (a user's ADD_DEV is sent by a
#     child process with the user's real ids; no thread of ublkd ever has them), and kill that
#     child: the Add fails, and nothing is left behind;
#  2. take a name meant for root (or another user): a user's names are USER:NAME;
#  3. make ublkd hold memory for them (a tmpfs file or memfd as backing), or serve a backing that
#     is not a file on a disk file system (FUSE);
#  4. fill the blocks a file system keeps for root, through ublkd (their device's IO on the
#     backing runs with their credentials);
#  5. put escape sequences on root's terminal through the name of a backing file;
#  6. take every slot for pending polkit checks;
#  7. have an authorization granted for one device act on a later one under the same id.
# And 8., root's side of a takeover: ublkd leaves alone another program's device under an id it
# saved. (Holding a device's /dev/ublkcN is not open to users: t-users checks the node is root's.)
# Driver-independent: it runs on one leg (the sanitized 7.x one).
# vm-timeout: 600
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
require_cmd useradd runuser jq python3 dumpe2fs setpriv pkill umount findmnt
start_ublkd
(( $(ublkctl features) & 0x20 )) || skip "the kernel's ublk has no UBLK_F_UNPRIVILEGED_DEV"

polkit_grant_add_device mallory
n_devices() { ublkctl --json list | jq length; }
kernel_devices() { ls /sys/class/ublk-char 2> /dev/null | wc -l; }
muid=$(id -u mallory)
# The processes that act for mallory wait 300 ms once they are hers, so that her prober finds
# every one of them (test/README.md).
mkdir -p /run/systemd/system/ublkd.service.d
printf '[Service]\nEnvironment=UBLKD_TEST_CHILD_DELAY_MS=300\n' > /run/systemd/system/ublkd.service.d/50-child-delay.conf
defer "rm -f /run/systemd/system/ublkd.service.d/50-child-delay.conf; systemctl daemon-reload"
systemctl daemon-reload
systemctl restart ublkd
pid=$(ublkd_pid)
nofile_before=$(awk '/^Max open files/ {print $4}' /proc/"$pid"/limits)

# 1. mallory adds and removes null devices in a loop while a prober of hers, also as mallory,
# checks every thread of ublkd for her uid and for permission to signal it (kill -0) or read its
# limits (prlimit: the same permission as setting them), and stops (the first) or kills (the
# next two) ublkd's children that run with her real uid (the process sending her ADD_DEV).
cat > "$TEST_TMPDIR/prober.py" <<'EOT'
import os, resource, signal, sys
# prober.py PID UID STOPFILE: probes until STOPFILE appears, then prints its counts. The first
# add process of the user's it finds is stopped (ublkd must kill it after its timeout), the
# others killed.
pid, uid, stop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
scans = mine = signalable = limits = stopped = killed = 0
seen = set()
def status(path):
    try:
        with open(path) as f:
            return dict(l.split(":", 1) for l in f if ":" in l)
    except OSError:
        return None
while not os.path.exists(stop):
    scans += 1
    for tid in os.listdir("/proc/%d/task" % pid):
        st = status("/proc/%d/task/%s/status" % (pid, tid))
        if st and str(uid) in st["Uid"].split()[:3]:
            mine += 1
        try:
            os.kill(int(tid), 0)
            signalable += 1
        except OSError:
            pass
        try:
            resource.prlimit(int(tid), resource.RLIMIT_NOFILE)
            limits += 1
        except OSError:
            pass
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        st = status("/proc/%s/status" % p)
        if (not st or st["PPid"].strip() != str(pid) or st["Uid"].split()[0] != str(uid) or p in seen
                or st["State"].split()[0] == "Z"):
            continue
        seen.add(p)
        # One that is exiting (its add done: no command line left) is not caught.
        try:
            with open("/proc/%s/cmdline" % p) as f:
                cmdline = f.read().replace("\0", " ")
        except OSError:
            continue
        if "--add-dev-for-user" not in cmdline:
            continue
        print("caught", p, st["State"].strip(), cmdline, file=sys.stderr)
        try:
            if stopped == 0:
                os.kill(int(p), signal.SIGSTOP)
                stopped += 1
            else:
                os.kill(int(p), signal.SIGKILL)
                killed += 1
        except OSError:
            pass
        with open(stop + ".caught", "w") as f:
            f.write("%d\n" % (stopped + killed))
print(scans, mine, signalable, limits, stopped, killed)
EOT
chmod 755 "$TEST_TMPDIR"
mkdir "$TEST_TMPDIR/m"
chown mallory "$TEST_TMPDIR/m"
stop=$TEST_TMPDIR/m/stop
as mallory python3 "$TEST_TMPDIR/prober.py" "$pid" "$muid" "$stop" > "$TEST_TMPDIR/prober.out" 2> "$TEST_TMPDIR/prober.err" &
prober=$!
defer "touch $stop; kill $prober 2> /dev/null || true"
caught() { cat "$stop.caught" 2> /dev/null || echo 0; }
added=0 refused=0 other="" i=0
# Until the prober has caught three add processes, or 60 adds.
while (( i < 60 && $(caught) < 3 )); do
	i=$((i + 1))
	if out=$(as mallory ublkctl add null --size 16M --name "mallory:n$i" 2>&1); then
		added=$((added + 1))
		as mallory ublkctl del "mallory:n$i" || fail "mallory could not remove mallory:n$i"
	else
		refused=$((refused + 1))
		other=$out
	fi
done
touch "$stop"
wait "$prober"
read -r scans mine signalable limits stopped killed < "$TEST_TMPDIR/prober.out"
echo "prober: $(cat "$TEST_TMPDIR/prober.out"); $i adds, $added done, $refused refused"
[ "$(ublkd_pid)" = "$pid" ] || fail "ublkd was replaced (pid $pid -> $(ublkd_pid))"
systemctl is-active -q ublkd || fail "ublkd is not active after the attack"
nofile=$(awk '/^Max open files/ {print $4}' /proc/"$pid"/limits)
[ "$nofile" = "$nofile_before" ] || fail "ublkd's RLIMIT_NOFILE changed: $nofile_before -> $nofile"
(( scans > 0 )) || fail "the prober never scanned ublkd's threads"
(( mine == 0 )) || fail "a thread of ublkd ran with mallory's uid $mine times in $scans scans"
(( signalable == 0 )) || fail "mallory could signal a thread of ublkd $signalable times"
(( limits == 0 )) || fail "mallory could read/set the limits of a thread of ublkd $limits times"
(( stopped + killed > 0 )) || fail "the prober caught none of mallory's add processes in $i adds"
(( added + refused == i )) || fail "adds: $added + $refused of $i"
# A process caught between its ADD_DEV's answer and its exit still had its add done: so at most,
# not exactly, as many adds failed as processes were caught.
(( refused >= 1 && refused <= stopped + killed )) || fail "mallory stopped or killed $((stopped + killed)) add processes, and $refused adds failed: $(cat "$TEST_TMPDIR/prober.err")"
[[ $other == "ublkctl: "*"the process ublkd ran for you was stopped or killed"* ]] || fail "a killed Add said: $other"
[ "$(n_devices)" = 0 ] || fail "devices left after the loop: $(ublkctl list)"
wait_until 10 test "$(kernel_devices)" = 0 || fail "kernel devices left: $(ls /sys/class/ublk-char)"
echo "signals: $scans scans of ublkd's threads during $i adds: 0 with mallory's uid, 0 signalable, 0 prlimit;" \
	"she stopped $stopped and killed $killed of her add processes, $refused adds failed ($added done)," \
	"nothing left, RLIMIT_NOFILE still $nofile; a failed add said: $other"
ublkd_log() { journalctl -b -u ublkd --no-pager -o cat; }
ublkd_log | grep -q "The process of ublkd --add-dev-for-user $muid did not answer in time and was killed" \
	|| fail "no log of the add process mallory stopped"
ublkd_log | grep -q "The process of ublkd --add-dev-for-user $muid was killed" || fail "no log of a killed add process"

# 2. names: a user's are USER:NAME; root's have no ':'.
for name in data srv-data root:data nobody:data; do
	if out=$(as mallory ublkctl add null --size 16M --name "$name" 2>&1); then
		fail "mallory took the name '$name'"
	fi
	[[ $out == *"Names of mallory's devices are 'mallory:NAME'"* ]] || fail "mallory, name $name: $out"
done
if out=$(ublkctl add null --size 16M --name mallory:x 2>&1); then fail "root took the name mallory:x"; fi
[[ $out == *"is a name for a device of user 'mallory'"* ]] || fail "root, name mallory:x: $out"
dev=$(as mallory ublkctl add null --size 16M --name mallory:data) || fail "mallory:data refused"
[ "$(readlink -f /dev/ublk/by-name/mallory:data)" = "$dev" ] || fail "no by-name link for mallory:data"
# Root's /etc/ublk/data.conf is root's "data", beside mallory's device, never hers.
mkdir -p /etc/ublk
echo "target=null
size=16M" > /etc/ublk/data.conf
defer "rm -f /etc/ublk/data.conf"
rdev=$(ublkctl up data) || fail "ublkctl up data failed"
[ "$(ublkctl --json show data | jq .OwnerUID)" = 0 ] || fail "up data: not root's"
[ "$(readlink -f /dev/ublk/by-name/data)" != "$dev" ] || fail "/dev/ublk/by-name/data is mallory's"
ublkctl down data || fail "ublkctl down data failed"
ublkctl --json show mallory:data > /dev/null || fail "down data took mallory's device"
if out=$(ublkctl up mallory:data 2>&1); then fail "up took a user's name: $out"; fi
as mallory ublkctl del mallory:data
echo "names: mallory refused data, srv-data, root:data, nobody:data; root refused mallory:x;" \
	"up/down data work on root's device beside mallory:data"

# 3. memory and user-served backings: tmpfs, a memfd, FUSE; root may still use tmpfs.
as mallory truncate -s 64M /dev/shm/mallory.img
defer "rm -f /dev/shm/mallory.img"
if out=$(as mallory ublkctl add loop /dev/shm/mallory.img 2>&1); then fail "mallory got a tmpfs backing"; fi
[[ $out == *"is on tmpfs, which keeps its data in memory"* ]] || fail "tmpfs backing: $out"
if out=$(as mallory python3 -c '
import os, sys
fd = os.memfd_create("backing", 0)
os.ftruncate(fd, 64 << 20)
os.execvp("ublkctl", ["ublkctl", "add", "loop", "/proc/self/fd/%d" % fd])' 2>&1); then
	fail "mallory got a memfd backing: $out"
fi
[[ $out == *"is a memfd, which keeps its data in memory"* ]] || fail "memfd backing: $out"
[ "$(n_devices)" = 0 ] || fail "refused backings left devices"
# A FUSE file (a server of this test's, mounted allow_other, as a user's would be with
# user_allow_other): refused without a request to the server for it, but for the FLUSH that
# the kernel sends when ublkd closes the fd.
mkdir "$TEST_TMPDIR/fuse"
python3 "$UBLKD_SRC/test/vm/fuse-one-file.py" "$TEST_TMPDIR/fuse" "$muid" $((64 << 20)) fuse.log > fuse.out 2>&1 &
defer "umount -l $TEST_TMPDIR/fuse 2> /dev/null || true"
wait_until 30 grep -q ready fuse.out || fail "the FUSE server did not mount: $(cat fuse.out)"
[ "$(findmnt -n -o FSTYPE "$TEST_TMPDIR/fuse")" = fuse ] || fail "not a FUSE mount: $(findmnt "$TEST_TMPDIR/fuse")"
if out=$(as mallory ublkctl add loop "$TEST_TMPDIR/fuse/img" 2>&1); then fail "mallory got a FUSE backing"; fi
[[ $out == *"is on fuse, which is served by a user's process"* ]] || fail "FUSE backing: $out"
umount "$TEST_TMPDIR/fuse"
(( $(wc -l < fuse.log) > 0 )) || fail "the FUSE server saw no request at all"
# The one request ublkd cannot help making is FLUSH (25): the kernel sends it on every close().
if grep -v '^25 ' fuse.log | grep -q " $pid\$"; then
	fail "ublkd asked the FUSE server: $(grep " $pid\$" fuse.log | head -n 3)"
fi
truncate -s 64M /dev/shm/root.img
defer "rm -f /dev/shm/root.img"
ublkctl add loop /dev/shm/root.img --name roottmp > /dev/null || fail "root's tmpfs backing refused"
ublkctl del roottmp
echo "backings: mallory refused a tmpfs file, a memfd and a FUSE file ($out); root's tmpfs file served"

# 4. a user's backing IO runs with the user's credentials: the blocks ext4 keeps for root (half
# of this file system) are not theirs to fill through ublkd.
truncate -s 96M /run/reserved.img
defer "rm -f /run/reserved.img"
mkfs.ext4 -q -F -m 50 /run/reserved.img
mkdir -p "$TEST_TMPDIR/reserved"
mount -o loop /run/reserved.img "$TEST_TMPDIR/reserved"
defer "umount $TEST_TMPDIR/reserved"
chown mallory "$TEST_TMPDIR/reserved"
as mallory truncate -s 90M "$TEST_TMPDIR/reserved/img"
rdev=$(as mallory ublkctl add loop "$TEST_TMPDIR/reserved/img" --name mallory:fill) || fail "mallory's fill device"
if as mallory dd if=/dev/zero of="$rdev" bs=1M count=90 oflag=direct status=none 2> /dev/null; then
	fail "mallory wrote 90M through ublkd on a file system with half of 96M reserved for root"
fi
as mallory ublkctl del mallory:fill
reserved=$(dumpe2fs -h /run/reserved.img 2> /dev/null | awk -F: '/^Reserved block count/ {print $2 + 0}')
free=$(stat -f -c %f "$TEST_TMPDIR/reserved")
(( free >= reserved )) || fail "mallory's writes through ublkd took root's reserved blocks: $free free of $reserved reserved"
echo "reserved blocks: mallory's writes stopped with $free blocks free, $reserved reserved for root"

# 5. a backing file named with an escape sequence reaches root's terminal escaped.
scratch_ext4 "$TEST_TMPDIR/disk" 256M
chown mallory "$TEST_TMPDIR/disk"
evil=$TEST_TMPDIR/disk/$'img\e]2;pwned\a\\x'
as mallory truncate -s 64M "$evil"
as mallory ublkctl add loop "$evil" --name mallory:evil > /dev/null || fail "mallory's ext4 backing refused"
out=$(ublkctl show mallory:evil)
grep -q $'\e' <<< "$out" && fail "ublkctl show wrote an escape character"
grep -qF 'img\x1b]2;pwned\x07\x5cx' <<< "$out" || fail "Backing not escaped as expected: $(grep Backing <<< "$out")"
[ "$(ublkctl --json show mallory:evil | jq -r .Backing)" = "$evil" ] || fail "JSON Backing differs"
ublkctl del mallory:evil
echo "escapes: Backing shown as $(grep Backing <<< "$out" | awk '{print $2}')"
# 6. one user cannot take every slot for pending polkit checks: eve, whom no rule grants, starts
# four Adds on terminals whose password prompts nobody answers; her fifth is refused at once,
# and mallory's Add goes through meanwhile.
id eve > /dev/null 2>&1 || useradd -m eve
cat > /etc/polkit-1/rules.d/10-ublk-attack-admin.rules <<'EOT'
polkit.addAdminRule(function(action, subject) { return ["unix-user:root"]; });
EOT
defer "rm -f /etc/polkit-1/rules.d/10-ublk-attack-admin.rules"
systemctl restart polkit
defer "pkill -KILL -u eve || true"
for k in 1 2 3 4; do
	"$UBLKD_SRC"/test/vm/pty-answer.py "never-prompted" x 400 \
		setpriv --reuid=eve --regid=eve --init-groups ublkctl add null --size 16M > "eve$k.out" 2>&1 &
done
eve_refused() {
	as eve ublkctl --no-ask-password add null --size 16M > eve5.out 2>&1
	grep -q "has 4 authorization checks in progress, the most ublkd keeps for one user" eve5.out
}
wait_until $((120 * TIME_FACTOR)) eve_refused || fail "eve's fifth Add was not refused: $(cat eve5.out); the four waiting: $(cat eve[1-4].out)"
mdev=$(as mallory ublkctl add null --size 16M --name mallory:beside) || fail "mallory's Add while eve waits"
as mallory ublkctl del mallory:beside
pkill -KILL -u eve || true
echo "polkit: eve's fifth pending check refused ($(cat eve5.out)); mallory's Add went through ($mdev)"

# 7. an operation polkit authorizes acts on the device it was asked about, not on a later one
# under the same id: eve asks to stop mallory's device; while her password prompt waits, the
# device is removed and root adds one that gets the same id; her answer then finds it gone.
cp /etc/shadow shadow.saved
defer "cp shadow.saved /etc/shadow"
echo 'root:ublk-test-pw' | chpasswd
gdev=$(as mallory ublkctl add null --size 16M --name mallory:gen) || fail "add mallory:gen"
gid=${gdev#/dev/ublkb}
"$UBLKD_SRC"/test/vm/pty-answer.py --hold "$PWD/gen-go" "Password:" ublk-test-pw 300 \
	setpriv --reuid=eve --regid=eve --init-groups ublkctl stop "$gid" > gen.out 2>&1 &
gen=$!
wait_until $((120 * TIME_FACTOR)) test -e gen-go.prompted || fail "eve's stop never asked for a password: $(cat gen.out)"
as mallory ublkctl del mallory:gen
rdev=$(ublkctl add null --size 16M --name gen) || fail "root's add"
[ "$rdev" = "$gdev" ] || fail "root's device is $rdev, not $gdev"
touch gen-go
if wait "$gen"; then fail "eve's stop succeeded: $(cat gen.out)"; fi
grep -q "No such device: $gid (it was removed)" gen.out || fail "eve's stop said: $(cat gen.out)"
[ "$(ublkctl --json show gen | jq -r .State)" = live ] || fail "root's device was stopped by eve's answer"
ublkctl del gen
echo "authorization: eve's stop of mallory's device $gid, answered after root's device took the id, said: $(grep -o 'No such device.*' gen.out)"

# 8. a takeover that finds another program's device under an id ublkd saved leaves it alone:
# ublkd is killed (and not restarted), its device deleted and another program's device added
# under that id; the next ublkd must not delete that one.
printf '[Service]\nRestart=no\n' > /run/systemd/system/ublkd.service.d/60-no-restart.conf
defer "rm -f /run/systemd/system/ublkd.service.d/60-no-restart.conf; systemctl daemon-reload"
systemctl daemon-reload
sdev=$(ublkctl add null --size 16M --name stale) || fail "add stale"
sid=${sdev#/dev/ublkb}
systemctl kill -s KILL ublkd
wait_until 30 test "$(systemctl show -P ActiveState ublkd)" != active || fail "ublkd still active after SIGKILL"
build_kmod_perm
[ "$(./kmod-perm cmd 0 del "$sid")" = 0 ] || fail "deleting ublkd's quiesced device $sid"
out=$(./kmod-perm add 0 noflag) || fail "kmod-perm add: exit $?"
other=${out%% *}
defer "./kmod-perm cmd 0 del $other > /dev/null || true"
[ "$other" = "$sid" ] || fail "another program's device got id $other, not the saved $sid"
rm -f /run/systemd/system/ublkd.service.d/60-no-restart.conf
systemctl daemon-reload
systemctl reset-failed ublkd
systemctl start ublkd
wait_until 30 sh -c "journalctl -b -u ublkd -o cat | grep -q 'Cannot serve ublk device $sid again: .*left it alone'" \
	|| fail "no 'left it alone' for device $sid: $(journalctl -b -u ublkd -o cat | tail -n 3)"
[ -e "/sys/class/ublk-char/ublkc$sid" ] || fail "ublkd removed another program's device $sid"
if ublkctl show stale > /dev/null 2>&1; then fail "ublkd serves 'stale' on another program's device"; fi
[ "$(./kmod-perm cmd 0 del "$other")" = 0 ] || fail "deleting the other program's device $other"
echo "takeover: another program's device under the saved id $sid was left alone"
echo ok
