#!/bin/bash
# test-dkms-conf.sh DKMS_CONF VERSION SERIES FILE...: src/kernel/dkms.conf describes the package
# meson installs with -Ddkms=true. SERIES: the kernel series the module builds for, comma-separated
# (kmod_series of src/kernel/meson.build). FILEs are what goes into it beside dkms.conf (module/
# and uapi/).
#   - dkms sources dkms.conf as bash: so does this test, with the variables dkms sets, and
#     checks the result: package ublk_drv at the project's version (dkms.conf is static: a
#     version bump in meson.build must be made there too), built in module/ of dkms's copy
#   - BUILD_EXCLUSIVE_KERNEL lets DKMS build for the kernels of SERIES and for no other: dkms
#     matches it against the kernel's release with bash's =~, and so does this test
#   - every object of ublk_drv in module/Kbuild has its .c in the package, and the UAPI header
#     the module includes is there, so that a DKMS build needs nothing but the package
set -euo pipefail
conf=$1 version=$2 series=$3
shift 3
fails=0
bad() {
	echo "FAIL: $*" >&2
	fails=$((fails + 1))
}
expect() {	# expect WHAT GOT WANT
	[ "$2" = "$3" ] || bad "$1 is '$2', expected '$3'"
}

# shellcheck disable=SC2034 # set for dkms.conf, as dkms does
kernel_source_dir=/KSRC dkms_tree=/DKMS
# shellcheck source=/dev/null
. "$conf"
expect PACKAGE_NAME "${PACKAGE_NAME:-}" ublk_drv
expect "PACKAGE_VERSION (src/kernel/dkms.conf)" "${PACKAGE_VERSION:-}" "$version"
expect 'BUILT_MODULE_NAME[0]' "${BUILT_MODULE_NAME[0]:-}" ublk_drv
expect 'BUILT_MODULE_LOCATION[0]' "${BUILT_MODULE_LOCATION[0]:-}" module/
expect 'MAKE[0]' "${MAKE[0]:-}" \
	"make -C /KSRC M=/DKMS/ublk_drv/$version/build/module UBLK_DRV_VERSION=$version modules"
expect CLEAN "${CLEAN:-}" "make -C /KSRC M=/DKMS/ublk_drv/$version/build/module UBLK_DRV_VERSION=$version clean"
expect 'DEST_MODULE_LOCATION[0]' "${DEST_MODULE_LOCATION[0]:-}" /updates/dkms

# Releases as Debian names them, of every series near ours: only those of SERIES may match.
re=${BUILD_EXCLUSIVE_KERNEL:-}
IFS=, read -ra want <<<"$series"
matched=0
[ -n "$re" ] || bad "no BUILD_EXCLUSIVE_KERNEL: DKMS would build (or fail to) for any kernel"
[ -z "$re" ] || for major in 5 6 7 16; do
	for minor in 0 1 2 10 11 12 13 19 120; do
		ours=0
		for s in "${want[@]}"; do [ "$major.$minor" = "$s" ] && ours=1; done
		for rel in "$major.$minor.0-57-amd64" "$major.$minor.95+deb12-amd64" "$major.$minor.7+deb13-cloud-amd64"; do
			if [[ $rel =~ $re ]]; then
				[ "$ours" = 1 ] || bad "BUILD_EXCLUSIVE_KERNEL '$re' matches $rel, not of $series"
				matched=$((matched + 1))
			else
				[ "$ours" = 0 ] || bad "BUILD_EXCLUSIVE_KERNEL '$re' does not match $rel, of $series"
			fi
		done
	done
done
[ -z "$re" ] || [ "$matched" = $((3 * ${#want[@]})) ] || bad "BUILD_EXCLUSIVE_KERNEL matched $matched releases, expected $((3 * ${#want[@]}))"

declare -A have=()
kbuild=
for f in "$@"; do
	[ -f "$f" ] || bad "$f: no such file"
	have[$(basename "$(dirname "$f")")/$(basename "$f")]=1
	[ "$(basename "$f")" = Kbuild ] && kbuild=$f
done
[ -n "$kbuild" ] || bad "module/Kbuild is not in the package"
[ -n "${have[uapi/ublk_cmd.h]:-}" ] || bad "uapi/ublk_cmd.h is not in the package"
objs=$(sed -n 's/^ublk_drv-y[[:space:]]*[:+]\{0,1\}=//p' "${kbuild:-/dev/null}")
[ -n "$objs" ] || bad "no 'ublk_drv-y :=' line in $kbuild"
for o in $objs; do
	[ -n "${have[module/${o%.o}.c]:-}" ] ||
		bad "module/${o%.o}.c (object $o in Kbuild) is not in the package: add it to kmod_sources"
done
for f in "$@"; do
	case $f in *.c|*.h) ;; *) continue ;; esac
	for h in $(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f"); do
		[ -n "${have[module/$h]:-}" ] || [ -n "${have[uapi/$h]:-}" ] ||
			bad "$f includes \"$h\", which is not in the package"
	done
done
[ "$fails" = 0 ] || exit 1
echo "dkms.conf: ublk_drv $PACKAGE_VERSION for Linux $series ($re), ${#have[@]} files, objects: $objs"
