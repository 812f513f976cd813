#!/bin/bash
# vm-timeout: 1500
# The rbd target (issue 34) under faults, on the boot's Ceph cluster (test/vm/ceph-cluster): the
# OSD restarted under fio crc32c write+verify 3 times, and ublkd killed (SIGKILL; systemd starts
# it again and it recovers the device, reconnecting from its saved options and the fds systemd
# kept) under fio 3 times: 0 fio errors, 0 kernel IO errors. Then the cluster unreachable longer
# than io-timeout: IO fails with EIO and the device stays. VMT_RBD_FAULT_CYCLES (3) sets the
# number of OSD restarts and of kills (each kill costs ~35-75 s under TCG: see test/README.md).
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
require_cmd fio jq
start_ublkd
busctl get-property org.ublk.ublkd1 /org/ublk/ublkd1 org.ublk.ublkd1.Manager Targets | grep -q '"rbd"' ||
	skip "ublkd was built without librbd"
ceph_cluster_up
C=$CEPH_TEST_DIR
cycles=${VMT_RBD_FAULT_CYCLES:-3}
rbd_admin create --size 256M rbd/f1
dev=$(ublkctl add rbd rbd/f1 --name f1 --ceph-conf "$C/client.conf" --keyring "$C/admin.keyring" --io-timeout 300)
blk=${dev#/dev/}
[ "$(systemctl show -P NFileDescriptorStore ublkd)" = 2 ] ||
	fail "systemd keeps $(systemctl show -P NFileDescriptorStore ublkd) fds for ublkd, not ceph-conf's and keyring's 2"
io_errors() { dmesg | grep -c "I/O error, dev $blk" || true; }
errors_before=$(io_errors)

fio_pid=
runs=0
start_fio() {
	runs=$((runs + 1))
	fio --name=f --filename="$dev" --ioengine=libaio --direct=1 --iodepth=16 --bsrange=4k-64k \
		--rw=randwrite --size=32M --randseed=$runs --verify=crc32c --verify_fatal=1 \
		--output-format=json --output="fio-$runs.json" > /dev/null 2>&1 &
	fio_pid=$!
}
check_fio() {
	wait "$fio_pid" || fail "fio run $runs failed: $(head -c 1500 fio-$runs.json)"
	sed -i '/^{/,$!d' "fio-$runs.json"
	jq -e '.jobs[0].error == 0 and .jobs[0].read.total_ios > 0' "fio-$runs.json" > /dev/null ||
		fail "fio run $runs reported errors: $(head -c 1500 fio-$runs.json)"
}
progressed() { [ "$(ios_done "$blk")" -ge $(($1 + 32)) ]; }
fio_busy() { ! exited "$fio_pid"; }

# OSD restarts: IO waits, then completes.
for n in $(seq "$cycles"); do
	start_fio
	before=$(ios_done "$blk")
	wait_until 120 progressed "$before" || fail "OSD restart $n: no IO on $dev"
	fio_busy || fail "OSD restart $n: fio ended before the restart (make it longer)"
	t=$(date +%s%N)
	"$UBLKD_SRC/test/vm/ceph-cluster" restart-osd || fail "OSD restart $n: the OSD did not come back"
	up=$((($(date +%s%N) - t) / 1000000))
	before=$(ios_done "$blk")
	wait_until 300 progressed "$before" || fail "OSD restart $n: IO did not resume"
	check_fio
	echo "OSD restart $n: OSD down and up in $up ms, IO resumed $((($(date +%s%N) - t) / 1000000 - up)) ms later at most; fio run $runs: 0 errors"
done

# ublkd killed: recovered, reconnected, the exclusive lock taken back.
kill_ublkd() { systemctl kill --kill-who=main -s KILL ublkd; }
recovered() { ublkd_replaced "$1" && [ "$(ublkctl show --json f1 2> /dev/null | jq -r .State)" = live ]; }
for n in $(seq "$cycles"); do
	systemctl reset-failed ublkd
	start_fio
	before=$(ios_done "$blk")
	wait_until 120 progressed "$before" || fail "kill $n: no IO on $dev"
	old=$(ublkd_pid)
	t=$(date +%s%N)
	kill_ublkd
	wait_until 120 recovered "$old" ||
		fail "kill $n: device not live again: $(ublkctl list 2>&1); $(journalctl -u ublkd -n 15 --no-pager)"
	live=$((($(date +%s%N) - t) / 1000000))
	before=$(ios_done "$blk")
	wait_until 300 progressed "$before" || fail "kill $n: IO did not resume"
	check_fio
	echo "kill $n: live again after $live ms, IO flowing $((($(date +%s%N) - t) / 1000000)) ms after the kill; fio run $runs: 0 errors"
done
[ "$(io_errors)" -eq "$errors_before" ] || fail "the kernel logged IO errors on $dev: $(dmesg | grep "dev $blk" | tail -n 3)"
journalctl --sync
journalctl -b -u ublkd --no-pager | grep -q 'Took over rbd device .* "f1": recovered, live' ||
	fail "ublkd logged no recovery of f1"
ublkctl del f1

# The cluster away (the OSD stopped) longer than io-timeout: EIO, the device stays.
dev=$(ublkctl add rbd rbd/f1 --name f1 --ceph-conf "$C/client.conf" --keyring "$C/admin.keyring" --io-timeout 10)
dd if=/dev/urandom of="$dev" bs=64k count=16 oflag=direct status=none
osd=$(cat "$C/run/osd.0.pid")
kill -STOP "$osd"
defer "kill -CONT $osd 2> /dev/null || true"
t=$(date +%s%N)
! dd if="$dev" of=/dev/null bs=64k count=16 skip=200 iflag=direct status=none 2> dd.err || fail "a read with the OSD stopped succeeded"
ms=$((($(date +%s%N) - t) / 1000000))
kill -CONT "$osd"
grep -q "Input/output error" dd.err || fail "the read failed otherwise: $(cat dd.err)"
[ "$(ublkctl show --json f1 | jq -r .State)" = live ] || fail "the device is not live after the timeout"
dd if="$dev" of=/dev/null bs=64k count=16 iflag=direct status=none || fail "IO fails after the OSD came back"
echo "OSD stopped: a read failed with EIO after $ms ms (io-timeout 10s), the device stayed and serves IO again"
ublkctl del f1
