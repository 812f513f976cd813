# test/vm/lib.sh: helpers for VM tests (test/vm/t-*.sh). Source it first:
#     . "$(dirname "$0")/lib.sh"
# Tests run as root inside the test VM (see test/README.md). Environment from vm-run:
#   UBLKD_SRC    source tree (the host's, read-only in the VM)
#   UBLKD_BUILD  meson build directory (idem; build before booting)
#   UBLK_DRIVER  "intree" (the kernel's ublk_drv) or the path of a .ko to insmod instead
#   UBLKD_VM_KERNEL, UBLKD_VM_KV   kernel name (6.12, 7, ...) and uname -r
#   UBLKD_VM_INSTALLED             1 if vm-run installed the build before boot (install_ublkd)
#   TEST_NAME, TEST_TMPDIR         this test's name and a scratch directory (also the cwd)
# shellcheck shell=bash

: "${UBLKD_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${UBLKD_BUILD:=$UBLKD_SRC/build}"
: "${UBLK_DRIVER:=intree}"
: "${TEST_NAME:=$(basename "$0" .sh)}"
export UBLKD_SRC UBLKD_BUILD UBLK_DRIVER TEST_NAME

# skip REASON: the test does not apply here (exit 77)
skip() {
	echo "SKIP: $*"
	exit 77
}

# fail MSG: the test failed (exit 1)
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# log MSG: a timestamped line (seconds since boot)
log() {
	local up
	read -r up _ < /proc/uptime
	echo "[$up] $*"
}

# require_cmd CMD...: skip unless all commands exist
require_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "command not found: $c"
	done
}

# wait_until TIMEOUT_S CMD [ARG...]: run CMD until it succeeds (returns 0) or TIMEOUT_S seconds
# have passed (returns 1, message on stderr). Polls at 20 ms, backing off to 250 ms. Use it for
# every "wait for X to happen": never a bare sleep as synchronisation. The bound is stretched by
# $TIME_FACTOR (a sanitized ublkd).
wait_until() {
	local timeout=$1 delay=0.02 now end int frac=0
	shift
	[ $# -gt 0 ] || { echo "wait_until: no command" >&2; return 2; }
	int=${timeout%%.*}
	[[ $timeout == *.* ]] && frac=${timeout#*.}
	frac=${frac}000000000
	now=$(date +%s%N)
	end=$((now + (${int:-0} * 1000000000 + 10#${frac:0:9}) * ${TIME_FACTOR:-1}))
	while :; do
		"$@" && return 0
		now=$(date +%s%N)
		if [ "$now" -ge "$end" ]; then
			echo "wait_until: timed out after ${timeout}s: $*" >&2
			return 1
		fi
		sleep "$delay"
		case $delay in
		0.02) delay=0.05 ;;
		0.05) delay=0.1 ;;
		*) delay=0.25 ;;
		esac
	done
}

# wait_system_running [TIMEOUT_S]: wait until systemd has finished booting; prints the state
# (running or degraded) and returns 0 if it is "running"
wait_system_running() {
	local state
	state=$(timeout "${1:-120}" systemctl is-system-running --wait 2>/dev/null)
	echo "system state: ${state:-unknown}"
	[ "$state" = running ]
}

# defer CMD...: run CMD (a shell string) when the test exits, last deferred first
_DEFERRED=()
_run_deferred() {
	local c
	for c in "${_DEFERRED[@]}"; do
		eval "$c" || echo "defer: '$c' failed" >&2
	done
}
defer() {
	_DEFERRED=("$*" "${_DEFERRED[@]}")
	trap _run_deferred EXIT
}

# install_ublkd: make sure the build (ublkd, ublkctl, unit, D-Bus files...) is installed in the
# VM. vm-run normally installed it before systemd started (--install, the default when
# $UBLKD_BUILD is a meson build directory); otherwise "meson install" runs here (slow under TCG),
# then systemd, D-Bus and udev reload their configuration. Idempotent.
install_ublkd() {
	local marker=/run/vmtest-ublkd-installed
	if [ ! -e $marker ]; then
		[ -f "$UBLKD_BUILD/build.ninja" ] || fail "install_ublkd: no meson build in UBLKD_BUILD=$UBLKD_BUILD"
		meson install -C "$UBLKD_BUILD" --no-rebuild --quiet >/dev/null \
			|| fail "install_ublkd: meson install -C $UBLKD_BUILD failed"
		if ublkd_sanitized; then
			# As vm-run does for the tree it installs: LeakSanitizer stops ublkd's threads
			# with ptrace at exit (in @debug, outside the unit's @system-service), and ASan's
			# quarantine and shadow memory are no measure of ublkd's own: let them be. In
			# /etc: tests remove /run's drop-ins.
			mkdir -p /etc/systemd/system/ublkd.service.d
			printf '[Service]\nSystemCallFilter=@debug\nMemoryHigh=infinity\n' \
				> /etc/systemd/system/ublkd.service.d/10-sanitizer.conf
		fi
		systemctl daemon-reload
		busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig >/dev/null
		udevadm control --reload
		: > $marker
	fi
	command -v ublkd >/dev/null || fail "install_ublkd: ublkd is not on PATH after the install"
	command -v ublkctl >/dev/null || fail "install_ublkd: ublkctl is not on PATH after the install"
}

# load_ublk_driver: load the ublk driver the run is about (UBLK_DRIVER: "intree" = modprobe the
# kernel's ublk_drv; a path = insmod that .ko, after its dependencies) and wait for
# /dev/ublk-control. Idempotent. Exits the test with a clear message (fail) if it cannot.
load_ublk_driver() {
	local drv=${UBLK_DRIVER:-intree} name deps d other marker=/run/vmtest-ublk-driver
	if [ "$drv" = intree ]; then
		name=ublk_drv
		if [ -d /sys/module/$name ] && [ "$(cat $marker 2>/dev/null)" != intree ] \
			&& [ -e $marker ]; then
			rmmod "$name" || fail "load_ublk_driver: a non-intree $name is loaded and cannot be removed"
		fi
		if [ ! -d /sys/module/$name ]; then
			modprobe "$name" || fail "load_ublk_driver: 'modprobe $name' failed on $(uname -r)"
		fi
	else
		[ -f "$drv" ] || fail "load_ublk_driver: UBLK_DRIVER=$drv: no such file"
		name=$(modinfo -F name "$drv" 2>/dev/null)
		[ -n "$name" ] || name=$(basename "$drv" | sed 's/\.ko.*$//')
		name=${name//-/_}
		# another ublk driver (the in-tree one, or another build of ours) must go first
		# Ours is out of tree ("O" in its taint); the marker alone is not enough, since
		# ublkd.service's "modprobe ublk_drv" loads the in-tree one once ours was removed.
		for other in ublk_drv "$name"; do
			[ -d "/sys/module/$other" ] || continue
			[ "$other" = "$name" ] && [ "$(cat $marker 2>/dev/null)" = "$drv" ] &&
				grep -q O "/sys/module/$other/taint" 2>/dev/null && continue
			rmmod "$other" || fail "load_ublk_driver: '$other' is loaded and cannot be removed"
		done
		if [ ! -d "/sys/module/$name" ]; then
			deps=$(modinfo -F depends "$drv" 2>/dev/null)
			for d in ${deps//,/ }; do
				modprobe "$d" || fail "load_ublk_driver: 'modprobe $d' (needed by $drv) failed"
			done
			insmod "$drv" || fail "load_ublk_driver: 'insmod $drv' failed on $(uname -r)" \
				"(module built for: $(modinfo -F vermagic "$drv" 2>/dev/null | cut -d' ' -f1))"
		fi
	fi
	echo "$drv" > $marker
	wait_until 10 test -c /dev/ublk-control \
		|| fail "load_ublk_driver: $name loaded but /dev/ublk-control did not appear"
	udevadm settle --timeout=10 >/dev/null 2>&1 || true
}

# load_our_driver: for the tests of our own module (src/kernel/module): skips unless vm-run
# --driver gave it, loads it (load_ublk_driver), and checks the loaded ublk_drv is it: out of tree
# ("O" in its taint), not the in-tree module of the same name.
UBLKD_KMOD_DESC="ublkd's userspace block device driver (ublk ABI)"
# driver_splice: the loaded ublk_drv is ours with splice() on /dev/ublkcN (module parameter
# splice=Y), so ublkd's zero-copy=on takes splice mode where the kernel has no AUTO_BUF_REG
driver_splice() {
	[ "$(cat /sys/module/ublk_drv/parameters/splice 2>/dev/null)" = Y ]
}
load_our_driver() {
	[ "${UBLK_DRIVER:-intree}" != intree ] || skip "needs vm-run --driver PATH/ublk_drv.ko"
	[ "$(modinfo -F description "$UBLK_DRIVER")" = "$UBLKD_KMOD_DESC" ] ||
		skip "$UBLK_DRIVER is not ublkd's driver"
	load_ublk_driver
	grep -q O /sys/module/ublk_drv/taint || fail "the loaded ublk_drv is not $UBLK_DRIVER"
}

# build_c OUT GCC_ARGS...: ./OUT, made by "gcc -O2 -w GCC_ARGS". Several tests build the same
# test program and gcc takes seconds under TCG: the first build of a boot is kept in /run and
# copied (the source tree does not change under a running VM).
build_c() {
	local out=$1 bin
	shift
	require_cmd gcc
	bin=/run/vmtest-bin/$out-$(printf '%s\n' "$@" | sha256sum | cut -c1-16)
	if [ ! -x "$bin" ]; then
		mkdir -p /run/vmtest-bin
		gcc -O2 -w "$@" -o "$bin.tmp" && mv "$bin.tmp" "$bin" || return 1
	fi
	cp "$bin" "./$out"
}

# build_kmod_perm: ./kmod-perm (test/vm/kmod-perm.c, kmod-perm-race.c), the driver tests'
# control-command tool and servers.
# kmod_perm_expect WANT UID OP ID [PATH]: OP (kmod-perm cmd) as UID must return WANT (0 or -errno).
build_kmod_perm() {
	local d=$UBLKD_SRC/test/vm
	build_c kmod-perm -I"$UBLKD_SRC/src/kernel/uapi" "$d/kmod-perm.c" "$d/kmod-perm-race.c" -luring -lpthread ||
		fail "cannot build kmod-perm"
}
kmod_perm_expect() {
	local want=$1 got
	shift
	got=$(./kmod-perm cmd "$@") || fail "kmod-perm cmd $*: exit $?"
	[ "$got" = "$want" ] || fail "uid $1: $2 on device $3 ${4:+(path $4) }returned $got, expected $want"
}

# start_ublkd: the usual start of a ublkd test: driver loaded, build installed, ublkd.service
# running and answering on the bus; stopped again (removing every device) when the test exits.
start_ublkd() {
	load_ublk_driver
	install_ublkd
	systemctl start ublkd || fail "start_ublkd: systemctl start ublkd failed: $(journalctl -b -u ublkd --no-pager | tail -n 5)"
	# Whatever the test leaves, pass or fail, goes with ublkd: the next test starts clean.
	defer "systemctl stop ublkd"
	ublkctl list >/dev/null || fail "start_ublkd: ublkd does not answer on the bus"
}

# ublkd_sanitized: the installed ublkd is built with ASan, UBSan or TSan (tools/test runs the vm
# suite once so). Its RSS then says nothing about leaks (ASan's quarantine holds freed memory;
# LeakSanitizer reports leaks instead, and the runner fails a test on any report) and it runs
# several times slower: tests print those figures but check them on a plain build only, and
# stretch their time bounds by $TIME_FACTOR.
# ublkd_sanitized [BINARY]: the installed ublkd (or BINARY) is so built.
ublkd_sanitized() {
	ldd "${1:-$(command -v ublkd)}" 2> /dev/null | grep -Eq 'lib(asan|tsan|ubsan)\.'
}
TIME_FACTOR=1
if ublkd_sanitized || ublkd_sanitized "$UBLKD_BUILD/src/daemon/ublkd"; then
	TIME_FACTOR=4
fi

# exited PID: PID has ended (a zombie counts: kill -0 succeeds on one)
exited() {
	local st
	! st=$(ps -o stat= -p "$1" 2> /dev/null) || [[ $st == Z* ]]
}

# ios_done BLK: reads + writes completed on /dev/BLK (/sys/block/BLK/stat fields 1 and 5);
# 0 while there is no such disk
ios_done() {
	local s=()
	{ read -ra s < /sys/block/"$1"/stat; } 2> /dev/null
	echo $((${s[0]:-0} + ${s[4]:-0}))
}

# ios_past DISK N: DISK (ublkb0) has completed more than N reads and writes (for wait_until)
ios_past() {
	[ "$(ios_done "$1")" -gt "$2" ]
}

# fd_count PID: how many file descriptors PID has open
fd_count() {
	ls /proc/"$1"/fd | wc -l
}

# threads_of PID: PID's threads, without io_uring's own workers (iou-wrk-*, iou-sqp-*), which the
# kernel starts and ends on its own (an idle one goes after 5 s)
threads_of() {
	local t n=0 comm
	for t in /proc/"$1"/task/*; do
		read -r comm < "$t/comm" 2> /dev/null || continue
		[[ $comm == iou-* ]] || n=$((n + 1))
	done
	echo "$n"
}

# ublkd_pid: the main PID of ublkd.service
ublkd_pid() {
	systemctl show -P MainPID ublkd
}

# ublkd_replaced OLD_PID: a ublkd other than OLD_PID is running (after a restart or a crash)
ublkd_replaced() {
	local p
	p=$(ublkd_pid)
	[ "$p" != 0 ] && [ "$p" != "$1" ]
}

# scratch_ext4 DIR [SIZE]: mount a fresh ext4 file system on DIR, on a kernel loop device over a
# sparse file in /run (tmpfs). Unlike the VM's root (overlay on tmpfs), ext4 does O_DIRECT.
# Unmounted and detached when the test exits.
scratch_ext4() {
	local dir=$1 size=${2:-4G} img
	img=$(mktemp /run/scratch.XXXXXX)
	truncate -s "$size" "$img"
	mkfs.ext4 -q -F "$img" || fail "scratch_ext4: mkfs.ext4 failed"
	mkdir -p "$dir"
	mount -o loop "$img" "$dir" || fail "scratch_ext4: mount failed"
	defer "umount -l '$dir'; rm -f '$img'"
}

# fd_flags PID PATH: the open flags (octal, from fdinfo) of PID's first fd open on PATH
fd_flags() {
	local fd
	for fd in /proc/"$1"/fd/*; do
		if [ "$(readlink "$fd")" = "$2" ]; then
			awk '/^flags:/ {print $2}' /proc/"$1"/fdinfo/"${fd##*/}"
			return 0
		fi
	done
	return 1
}

# polkit_grant_add_device USER...: the polkit rule an admin writes to let group ublk-users create
# devices (ublkd(8), AUTHORIZATION), with USER... in that group; undone when the test exits.
polkit_grant_add_device() {
	local u
	groupadd -f ublk-users
	for u in "$@"; do
		id "$u" > /dev/null 2>&1 || useradd -m "$u"
		usermod -aG ublk-users "$u"
	done
	mkdir -p /etc/polkit-1/rules.d
	cat > /etc/polkit-1/rules.d/50-ublk-users.rules <<'EOT'
polkit.addRule(function(action, subject) {
	if (action.id == "org.ublk.ublkd1.add-device" && subject.isInGroup("ublk-users"))
		return polkit.Result.YES;
});
EOT
	defer "rm -f /etc/polkit-1/rules.d/50-ublk-users.rules; systemctl restart polkit"
	# polkitd reads rules at start (and on inotify, asynchronously): restart it to be sure.
	systemctl restart polkit
}

# as USER COMMAND...: COMMAND as USER (runuser, a new session without the terminal)
as() {
	local u=$1
	shift
	runuser -u "$u" -- "$@"
}

# ceph_cluster_up: the boot's single-node Ceph cluster (test/vm/ceph-cluster), started by the
# first rbd test and shared by the others; sets CEPH_TEST_DIR (its ceph.conf and keyrings) and
# ceph_admin (a command: the ceph CLI as client.admin) and rbd_admin (the rbd CLI). Left running
# when the test ends: the VM goes down with it.
CEPH_TEST_DIR=${CEPH_TEST_DIR:-/run/ceph-test}
export CEPH_TEST_DIR
ceph_cluster_up() {
	require_cmd ceph-mon ceph-osd rbd
	"$UBLKD_SRC/test/vm/ceph-cluster" start || fail "ceph_cluster_up: the Ceph cluster did not come up"
}
ceph_admin() { timeout 120 ceph -c "$CEPH_TEST_DIR/ceph.conf" -n client.admin -k "$CEPH_TEST_DIR/admin.keyring" "$@"; }
rbd_admin() { timeout 300 rbd -c "$CEPH_TEST_DIR/ceph.conf" -n client.admin -k "$CEPH_TEST_DIR/admin.keyring" "$@"; }
