#!/bin/bash
# The test VM itself: systemd is PID 1 with D-Bus, udev and journald running, the boot finished,
# and the ublk driver under test loads and provides /dev/ublk-control.
# vm-timeout: 120
set -eu
. "$(dirname "$0")/lib.sh"

echo "kernel: $(uname -r)"
echo "driver: $UBLK_DRIVER"

[ "$(cat /proc/1/comm)" = systemd ] || fail "PID 1 is $(cat /proc/1/comm), not systemd"
[ "$(systemd-detect-virt --container 2>/dev/null || true)" = none ] \
	|| fail "systemd thinks it runs in a container: $(systemd-detect-virt --container)"

wait_system_running 120 || {
	systemctl --failed --no-pager --no-legend || true
	fail "boot did not finish cleanly"
}
for u in dbus.service systemd-udevd.service systemd-journald.service; do
	systemctl -q is-active "$u" || fail "$u is $(systemctl is-active "$u")"
done
busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus GetId >/dev/null \
	|| fail "system bus does not answer"

load_ublk_driver
wait_until 10 test -c /dev/ublk-control || fail "/dev/ublk-control did not appear"
ls -l /dev/ublk-control
if [ "$UBLK_DRIVER" = intree ]; then
	[ -d /sys/module/ublk_drv ] || fail "ublk_drv not loaded"
	echo "ublk_drv: $(modinfo -F filename ublk_drv)"
fi
echo "uname -r: $(uname -r)"
