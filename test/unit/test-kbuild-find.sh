#!/bin/bash
# test-kbuild-find.sh KBUILD_FIND: src/kernel/kbuild-find.py, which picks the kernel build tree
# meson builds ublk_drv against, picks one of the series asked for, the newest, and never
# another series' (a machine with 7.x headers must not get a build that fails on them).
set -euo pipefail
find_py=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
expect() {	# expect WHAT GOT WANT
	[ "$2" = "$3" ] || { echo "FAIL: $1 is '$2', expected '$3'" >&2; fails=$((fails + 1)); }
}
tree() {	# tree RELEASE MAJOR PATCHLEVEL: a build tree as linux-headers-RELEASE has it
	mkdir -p "$tmp/$1/build/include/generated/uapi/linux"
	printf '#define LINUX_VERSION_MAJOR %s\n#define LINUX_VERSION_PATCHLEVEL %s\n#define LINUX_VERSION_SUBLEVEL 9\n' \
		"$2" "$3" > "$tmp/$1/build/include/generated/uapi/linux/version.h"
}
tree 6.1.0-57-amd64 6 1
tree 6.12.9-amd64 6 12
tree 6.12.95+deb12-amd64 6 12
tree 6.13.2-amd64 6 13
tree 7.3.4+deb13-amd64 7 3
mkdir -p "$tmp/6.12.99-noversion/build"

expect "series of 6.12.95+deb12-amd64" "$(python3 "$find_py" series "$tmp/6.12.95+deb12-amd64/build")" 6.12
expect "series of 7.3.4+deb13-amd64" "$(python3 "$find_py" series "$tmp/7.3.4+deb13-amd64/build")" 7.3
expect "series of a tree without version.h" "$(python3 "$find_py" series "$tmp/6.12.99-noversion/build")" ""
expect "find 6.1 6.12" "$(python3 "$find_py" find "$tmp/*/build" 6.1 6.12)" "$tmp/6.12.95+deb12-amd64/build"
expect "find 6.1" "$(python3 "$find_py" find "$tmp/*/build" 6.1)" "$tmp/6.1.0-57-amd64/build"
expect "find 6.2" "$(python3 "$find_py" find "$tmp/*/build" 6.2)" ""
expect "find 6.1 in an empty glob" "$(python3 "$find_py" find "$tmp/none/*/build" 6.1)" ""
check() {	# check TREE SERIES...: "exit STATUS: OUTPUT"
	local out rc=0
	out=$(python3 "$find_py" check "$@") || rc=$?
	echo "exit $rc: $out"
}
expect "check 6.12 against 6.1 6.12" "$(check "$tmp/6.12.9-amd64/build" 6.1 6.12)" "exit 0: "
expect "check 7.3 against 6.1 6.12" "$(check "$tmp/7.3.4+deb13-amd64/build" 6.1 6.12)" "exit 1: Linux 7.3"
expect "check 6.12 against 6.1" "$(check "$tmp/6.12.9-amd64/build" 6.1)" "exit 1: Linux 6.12"
expect "check a tree without version.h" "$(check "$tmp/6.12.99-noversion/build" 6.12)" \
	"exit 1: a tree without version.h"
[ "$fails" = 0 ] || exit 1
echo "kbuild-find.py: picks the newest tree of the series asked for, none of another; check refuses another"
