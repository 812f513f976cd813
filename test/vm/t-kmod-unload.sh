#!/bin/bash
# Our own ublk driver (src/kernel/module) unloads with devices that wait for a server: one
# quiesced (USER_RECOVERY) and one failing its IO (USER_RECOVERY_FAIL_IO), both of servers
# (kmod-srv.c) that were killed. rmmod removes them and the control node; the module loads
# again as the tests after this one expect it. It runs after the tests of servers that talk to
# the driver directly (test/meson.build): a module reference any of them leaked fails its rmmod.
# Skips unless the run uses our module (vm-run --driver .../ublk_drv.ko).
# vm-timeout: 120
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
. "$UBLKD_SRC/test/vm/kmod-lib.sh"

kmod_start
build_kmod_srv
# ublkd would hold /dev/ublk-control open (and take over devices that wait for a server)
systemctl stop ublkd 2> /dev/null || true
ram=/dev/shm/kmod-ram
rm -f $ram.f $ram.p
defer "rm -f $ram.f $ram.p"

# FAIL_IO, its server killed: IO fails, the device stays.
start_srv fail-io copy 16 failio $ram.f
fid=$id
wait_until 20 test -b /dev/ublkb$fid || fail "fail-io: no /dev/ublkb$fid"
kill -9 "$srv_pid"
wait "$srv_pid" 2> /dev/null || true
wait_until 10 state_is "$fid" 3 || fail "fail-io: state $(state "$fid"), not fail-io (3)"

# Plain USER_RECOVERY, idle: quiesced when its server dies.
start_srv plain copy 16 plain $ram.p
pdev=$id
wait_until 20 test -b /dev/ublkb$pdev || fail "plain: no /dev/ublkb$pdev"
kill -9 "$srv_pid"
wait "$srv_pid" 2> /dev/null || true
wait_until 10 state_is "$pdev" 2 || fail "plain: state $(state "$pdev"), not quiesced (2)"

rmmod ublk_drv || fail "rmmod ublk_drv failed"
[ ! -e /dev/ublkb$pdev ] && [ ! -e /dev/ublkb$fid ] || fail "devices left after rmmod"
[ ! -e /dev/ublk-control ] || wait_until 10 test ! -e /dev/ublk-control || fail "/dev/ublk-control stayed"
echo "unload: a quiesced and a fail-io device removed by rmmod"

# Leave it loaded for the tests after us, as load_ublk_driver left it.
insmod "$UBLK_DRIVER" || fail "insmod after rmmod failed"
wait_until 10 test -c /dev/ublk-control || fail "no /dev/ublk-control after the reload"
echo ok
