#!/bin/bash
# Our ublk driver through DKMS, as an admin installs it: the source package at
# /usr/src/ublk_drv-VERSION (meson install -Ddkms=true put it there, else it is
# copied from src/kernel), dkms add, build, install; then "systemctl start ublkd"
# (its unit modprobes ublk_drv) loads OURS from updates/dkms in place of the
# in-tree module, and ublkd serves a loop device whose data reads back right.
# dkms refuses to build it for a kernel of a series it is not for (7.x).
# dkms remove takes it away again: modprobe finds the in-tree module (on a
# kernel that has one: Debian 12's 6.1 has none), and no file of the package is
# left (source, dkms tree, module).
# Runs without vm-run --driver (that leg loads our .ko itself); skips without
# dkms or the running kernel's headers (the 7.x kernel has none).
# The VM's / is an overlay over the host's, read-only (vm-run): nothing
# written here reaches the host.
# Under TCG it takes 2.5 min on 6.1 and 3 to 9 min on 6.12: dkms build 60-170 s, and on
# 6.12 dkms install and remove each run depmod -a over all 4000 modules (40-190 s each).
# vm-timeout: 900
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"

[ "${UBLK_DRIVER:-intree}" = intree ] || skip "runs without vm-run --driver: DKMS builds and installs the module"
require_cmd dkms modinfo modprobe jq cmp
kv=$(uname -r)
[ -f "/lib/modules/$kv/build/Makefile" ] ||
	skip "no headers of the running kernel $kv (/lib/modules/$kv/build): dkms cannot build"
mod_desc=$UBLKD_KMOD_DESC

# the package version is the project's
ver=$(meson introspect --projectinfo "$UBLKD_BUILD" 2>/dev/null | jq -r '.version // empty') || true
[ -n "$ver" ] || fail "cannot tell the project version (meson introspect --projectinfo $UBLKD_BUILD)"
pkg=ublk_drv/$ver
src=/usr/src/ublk_drv-$ver

# timed CMD...: run CMD, say how long it took (dkms under TCG is slow: CI time)
timed() {
	local t0 rc=0
	t0=$(date +%s%N)
	"$@" || rc=$?
	echo "($* took $((($(date +%s%N) - t0) / 1000000)) ms)"
	return $rc
}

# the in-tree module, if loaded, is not ours (an earlier test or ublkd.service loaded it)
systemctl stop ublkd
if [ -d /sys/module/ublk_drv ]; then
	grep -q O /sys/module/ublk_drv/taint && fail "an out-of-tree ublk_drv is loaded already"
	rmmod ublk_drv || fail "cannot unload the in-tree ublk_drv"
fi
[ ! -e /var/lib/dkms/ublk_drv ] || fail "/var/lib/dkms/ublk_drv exists before dkms add"

# Whatever happens: no package left, and the in-tree driver for the tests after this one.
cleanup() {
	systemctl stop ublkd
	[ ! -d /sys/module/ublk_drv ] || ! grep -q O /sys/module/ublk_drv/taint || rmmod ublk_drv
	dkms remove "$pkg" --all >/dev/null 2>&1 || true
	rm -rf "$src"
	# still ours: load_ublk_driver (next test) must not take it for the in-tree one
	[ ! -d /sys/module/ublk_drv ] || ! grep -q O /sys/module/ublk_drv/taint ||
		echo dkms > /run/vmtest-ublk-driver
}
defer cleanup

if [ -f "$src/dkms.conf" ]; then
	echo "source package: $src, installed by meson install (-Ddkms=true)"
else
	[ ! -e "$src" ] || fail "$src exists without a dkms.conf"
	mkdir -p "$src"
	cp -r "$UBLKD_SRC/src/kernel/dkms.conf" "$UBLKD_SRC/src/kernel/module" "$UBLKD_SRC/src/kernel/uapi" "$src/"
	echo "source package: $src, copied from $UBLKD_SRC/src/kernel (build without -Ddkms=true)"
fi

# As the module's README says.
timed dkms add "$pkg" || fail "dkms add $pkg failed"
# A kernel of another series (7.x has its own, fuller ublk_drv): dkms refuses to build for it
# (BUILD_EXCLUSIVE_KERNEL), so it never replaces that driver, nor breaks on its headers.
other=7.3.4+deb13-amd64
rc=0
dkms build "$pkg" -k "$other" > other.log 2>&1 || rc=$?
[ "$rc" = 77 ] && grep -q BUILD_EXCLUSIVE other.log ||
	fail "dkms build $pkg -k $other: exit $rc, expected 77 (BUILD_EXCLUSIVE): $(cat other.log)"
[ ! -e "/var/lib/dkms/ublk_drv/$ver/$other" ] || fail "dkms left /var/lib/dkms/ublk_drv/$ver/$other"
echo "dkms build for $other refused (exit 77, BUILD_EXCLUSIVE_KERNEL)"
if ! timed dkms build "$pkg" -k "$kv" > build.log 2>&1; then
	cat build.log
	tail -n 40 /var/lib/dkms/ublk_drv/"$ver"/build/make.log 2>/dev/null || true
	fail "dkms build $pkg -k $kv failed"
fi
tail -n 1 build.log
timed dkms install "$pkg" -k "$kv" || fail "dkms install $pkg -k $kv failed"
status=$(timed dkms status ublk_drv)
echo "$status"
grep -q "^ublk_drv/$ver, $kv, [^:]*: installed$" <<<"$status" || fail "dkms status does not say installed"

# modprobe now finds ours in updates/dkms
file=$(modinfo -n ublk_drv) || fail "modinfo finds no ublk_drv"
echo "modprobe's ublk_drv: $file"
[[ $file == /lib/modules/$kv/updates/dkms/ublk_drv.ko* ]] || fail "modprobe would load $file, not the DKMS module"
[ "$(modinfo -F description "$file")" = "$mod_desc" ] || fail "$file is not ublkd's driver"
[ "$(modinfo -F version "$file")" = "$ver" ] || fail "$file has version '$(modinfo -F version "$file")', not $ver"

# ublkd.service's ExecStartPre modprobes it
install_ublkd
systemctl start ublkd || fail "systemctl start ublkd failed"
[ -d /sys/module/ublk_drv ] || fail "ublkd.service did not load ublk_drv"
taint=$(cat /sys/module/ublk_drv/taint)
echo "loaded ublk_drv, taint '$taint'"
[[ $taint == *O* ]] || fail "the loaded ublk_drv is the in-tree one (taint '$taint', no O)"
[ "$(cat /sys/module/ublk_drv/srcversion)" = "$(modinfo -F srcversion "$file")" ] ||
	fail "the loaded ublk_drv is not $file (srcversion)"
[ "$(cat /sys/module/ublk_drv/version)" = "$ver" ] || fail "the loaded ublk_drv is not version $ver"
wait_until 10 test -c /dev/ublk-control || fail "no /dev/ublk-control"

# a loop device: what is written through it is what its backing file holds and what is read back
truncate -s 64M backing.img
head -c 32M /dev/urandom > pattern
dev=$(ublkctl add loop "$PWD/backing.img" --name dkms)
[[ $dev =~ ^/dev/ublkb[0-9]+$ ]] || fail "ublkctl add printed '$dev'"
wait_until 10 test -b "$dev" || fail "no $dev"
dd if=pattern of="$dev" bs=1M oflag=direct status=none || fail "write to $dev failed"
dd if="$dev" of=readback bs=1M count=32 iflag=direct status=none || fail "read from $dev failed"
cmp pattern readback || fail "$dev read back other data than was written"
ublkctl del dkms
wait_until 10 test ! -e "$dev" || fail "$dev still exists after del"
cmp -n 32M pattern backing.img || fail "the backing file does not hold what was written"
grep -q O /sys/module/ublk_drv/taint || fail "ublk_drv changed under the test"
echo "32 MiB written and read back through $dev (DKMS ublk_drv $ver)"
systemctl stop ublkd

# dkms remove: the in-tree module is modprobe's again, and nothing of the package is left
# (but the source, which an admin or the package removes: dkms never does)
rmmod ublk_drv || fail "cannot unload the DKMS ublk_drv"
timed dkms remove "$pkg" --all || fail "dkms remove $pkg --all failed"
[ ! -e /var/lib/dkms/ublk_drv ] || fail "/var/lib/dkms/ublk_drv left after dkms remove: $(ls -R /var/lib/dkms/ublk_drv)"
left=$(find "/lib/modules/$kv/updates" -name 'ublk_drv.ko*' 2>/dev/null) || true	# dkms removes empty dirs
[ -z "$left" ] || fail "module file left after dkms remove: $left"
[ -f "$src/dkms.conf" ] || fail "dkms remove removed $src"
rm -rf "$src"
ls -d /usr/src/ublk_drv-* 2>/dev/null && fail "source package left in /usr/src"
if [ -z "$(find "/lib/modules/$kv/kernel" -name 'ublk_drv.ko*')" ]; then
	# a kernel built without ublk (CONFIG_BLK_DEV_UBLK unset): nothing is left to load
	file=$(modinfo -n ublk_drv 2>/dev/null) && fail "after dkms remove modinfo finds $file on a kernel without ublk"
	echo "after dkms remove: no ublk_drv to load ($kv has no ublk driver of its own)"
else
	file=$(modinfo -n ublk_drv) || fail "modinfo finds no ublk_drv after dkms remove"
	[[ $file == /lib/modules/$kv/kernel/* ]] || fail "after dkms remove modprobe would load $file"
	modprobe ublk_drv || fail "modprobe ublk_drv (in-tree) failed"
	taint=$(cat /sys/module/ublk_drv/taint)
	[[ $taint != *O* ]] || fail "after dkms remove the loaded ublk_drv is out of tree (taint '$taint')"
	[ "$(modinfo -F description "$file")" != "$mod_desc" ] || fail "$file is ublkd's driver"
	echo "after dkms remove: in-tree $file loaded (taint '$taint')"
fi
