#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# build.sh KDIR SRCDIR UAPIDIR WORKDIR OUTPUT [MAKE ARGS...]
#
# Kbuild of the 6.12 era builds external modules only inside M=, so the
# sources are copied into WORKDIR (in meson's build tree) and built there;
# the source tree gets no objects.  The UAPI header is not copied: Kbuild
# includes it from the source tree via UBLK_UAPI_DIR.
set -eu
kdir=$1 src=$2 uapi=$3 work=$4 out=$5
shift 5
mkdir -p "$work"
for f in "$src"/Kbuild "$src"/*.c "$src"/*.h; do
	# only changed files, so that make rebuilds only what changed
	cmp -s "$f" "$work/${f##*/}" || cp "$f" "$work/"
done
make -C "$kdir" M="$work" UBLK_UAPI_DIR="$uapi" "$@" modules
cp "$work/ublk_drv.ko" "$out"
