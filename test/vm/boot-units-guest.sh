#!/bin/bash
# In the VM booted by boot-units: /etc/ublk/data.conf and an enabled ublk@data.service gave
# /dev/ublk/by-name/data at boot, and fstab mounted its file system on /srv/data, with no step
# by hand.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
wait_system_running 120 || true
mounted() { findmnt -n -o SOURCE /srv/data > /dev/null; }
wait_until 60 mounted || fail "/srv/data is not mounted after boot: $(systemctl status srv-data.mount ublk@data --no-pager 2>&1 | tail -n 20)"
systemctl is-active -q ublk@data || fail "ublk@data is not active"
dev=$(readlink -f /dev/ublk/by-name/data)
[[ $dev == /dev/ublkb* ]] || fail "/dev/ublk/by-name/data -> '$dev'"
[ "$(findmnt -n -o SOURCE /srv/data)" = "$dev" ] || fail "/srv/data is on $(findmnt -n -o SOURCE /srv/data), not $dev"
[ "$(cat /srv/data/marker)" = "written on the host before boot" ] || fail "marker: $(cat /srv/data/marker)"
failed=$(systemctl list-units --failed --plain --no-legend | awk '{print $1}' | grep -E 'ublk|srv-data' || true)
[ -z "$failed" ] || fail "failed units: $failed"
echo "boot: ublk@data made $dev, /srv/data mounted from /dev/ublk/by-name/data, marker file read back"
umount /srv/data
systemctl stop ublk@data
[ -z "$(ls /sys/class/ublk-char)" ] || fail "device left after stopping ublk@data"
echo ok
