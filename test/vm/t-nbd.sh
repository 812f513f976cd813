#!/bin/bash
# vm-timeout: 420
# The nbd target against real NBD servers the test starts (nobody's mocks): nbdkit (memory and
# file plugins, over a unix socket and TCP), qemu-nbd exporting a qcow2 image, nbd-server. fio
# crc32c write+verify on each; ext4 with checksummed files across remove/re-add; what the server
# advertises reaches the device (size, read-only, discard); multi-conn; TLS with a PSK (a wrong
# key refused); a polkit-authorized user over their own socket (another user's refused, a server
# that never answers given up on before the kernel's timeout would kill ublkd); bad inputs each
# a one-line error within a bound, leaving no device; /etc/ublk/NAME.conf with ublk@NAME.
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
require_cmd nbdkit qemu-nbd qemu-img nbd-server fio jq psktool
start_ublkd
[[ $(busctl get-property org.ublk.ublkd1 /org/ublk/ublkd1 org.ublk.ublkd1.Manager Targets) == *'"nbd"'* ]] ||
	skip "ublkd built without the nbd target (libnbd)"
# In /run: ublkd has a private /tmp and /var/tmp, and root's devices are connected by ublkd.
T=/run/t-nbd
mkdir -p $T
defer "rm -rf $T"

# fio_verify DEV NAME [JOBS]: random writes 4k..64k with crc32c, verified in the run and again
# in a read-only pass; any error fails.
fio_verify() {
	local dev=$1 name=$2 jobs=${3:-1} common
	common=(--filename="$dev" --ioengine=io_uring --direct=1 --iodepth=16 --bsrange=4k-64k
		--rw=randwrite --size=16M --numjobs="$jobs" --offset_increment=16M --randseed=7
		--verify=crc32c --verify_fatal=1 --group_reporting --output-format=json)
	fio --name="$name" "${common[@]}" --output="$T/$name-w.json" || fail "$name: fio write+verify failed"
	fio --name="$name" "${common[@]}" --verify_only --output="$T/$name-v.json" ||
		fail "$name: fio verify pass failed: $(head -c 600 "$T/$name-v.json")"
	sed -i '/^{/,$!d' "$T/$name-w.json" "$T/$name-v.json"
	jq -e '.jobs[0].error == 0 and .jobs[0].write.total_ios > 0' "$T/$name-w.json" >/dev/null ||
		fail "$name: fio reported errors"
	jq -e '.jobs[0].error == 0 and .jobs[0].read.total_ios > 0' "$T/$name-v.json" >/dev/null ||
		fail "$name: verify pass reported errors"
	echo "$name: $(jq '.jobs[0].write.total_ios' "$T/$name-w.json") writes verified twice"
}

# serve NAME CMD...: run an NBD server in the background, killed when the test ends
serve() {
	local name=$1
	shift
	"$@" > "$T/$name.log" 2>&1 &
	echo $! > "$T/$name.pid"
	defer "kill $! 2>/dev/null; wait $! 2>/dev/null || true"
}
sock_up() { [ -S "$1" ]; }
tcp_up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
no_device() { ! ublkctl show "$1" >/dev/null 2>&1; }

# 1. nbdkit memory over a unix socket: size and flags from the server, fio verify, status.
serve mem nbdkit -f -U "$T/mem.sock" memory 256M
wait_until 10 sock_up "$T/mem.sock" || fail "nbdkit did not start: $(cat "$T/mem.log")"
dev=$(ublkctl add nbd "nbd+unix:///?socket=$T/mem.sock" --name mem)
ublkctl show --json mem | jq -e '.Target == "nbd" and .Size == 268435456 and .ReadOnly == false and
	.TargetStatus == "connected"' >/dev/null || fail "show: $(ublkctl show --json mem)"
[ "$(cat /sys/block/${dev#/dev/}/queue/discard_max_bytes)" != 0 ] ||
	fail "nbdkit memory can trim, but the device has no discard"
fio_verify "$dev" memory
# discard reaches the server: the memory plugin reads zeroes after a trim
dd if=/dev/urandom of="$dev" bs=1M count=1 oflag=direct status=none
blkdiscard -o 0 -l 1M "$dev"
[ "$(dd if="$dev" bs=1M count=1 iflag=direct status=none | tr -d '\0' | wc -c)" = 0 ] ||
	fail "data left after blkdiscard on nbdkit memory"
ublkctl del mem
no_device mem || fail "mem still there after del"

# 2. multi-conn: nbdkit memory advertises it, so 2 queues get 2 connections; the same without
# it (nbdkit's multi-conn filter) gets 1 queue, and says why.
dev=$(ublkctl add nbd "nbd+unix:///?socket=$T/mem.sock" --name mq --queues 2)
ublkctl show --json mq | jq -e '.Queues == 2' >/dev/null || fail "multi-conn: $(ublkctl show --json mq)"
fio_verify "$dev" memory-q2 2
ublkctl del mq
serve nomc nbdkit -f -U "$T/nomc.sock" --filter=multi-conn memory 64M multi-conn-mode=disable
wait_until 10 sock_up "$T/nomc.sock" || fail "nbdkit multi-conn filter did not start: $(cat "$T/nomc.log")"
ublkctl add nbd "nbd+unix:///?socket=$T/nomc.sock" --name nomc --queues 2 >/dev/null
ublkctl show --json nomc | jq -e '.Queues == 1 and (.TargetStatus | test("multi-conn"))' >/dev/null ||
	fail "no multi-conn: $(ublkctl show --json nomc)"
journalctl -b -u ublkd --no-pager | grep -q "2 queues asked for, 1 queue" || fail "no notice in the log"
ublkctl del nomc

# 3. nbdkit file plugin over TCP, read-only export: the device is read-only.
truncate -s 64M "$T/file.img"
serve file nbdkit -f -p 10811 -i 127.0.0.1 file "$T/file.img"
wait_until 10 tcp_up 10811 || fail "nbdkit file did not start: $(cat "$T/file.log")"
dev=$(ublkctl add nbd nbd://127.0.0.1:10811 --name file)
fio_verify "$dev" file
ublkctl del file
serve filero nbdkit -f -r -p 10812 -i 127.0.0.1 file "$T/file.img"
wait_until 10 tcp_up 10812 || fail "nbdkit -r did not start"
dev=$(ublkctl add nbd nbd://127.0.0.1:10812 --name ro)
ublkctl show --json ro | jq -e '.ReadOnly == true' >/dev/null || fail "read-only export, writable device"
[ "$(blockdev --getro "$dev")" = 1 ] || fail "$dev is not read-only in the block layer"
ublkctl del ro

# 4. qemu-nbd exporting a qcow2: a known pattern written through ublk lands as qemu-img sees it.
qemu-img create -q -f qcow2 "$T/disk.qcow2" 64M
serve qnbd qemu-nbd -t -f qcow2 -k "$T/q.sock" -e 4 "$T/disk.qcow2"
wait_until 10 sock_up "$T/q.sock" || fail "qemu-nbd did not start: $(cat "$T/qnbd.log")"
dev=$(ublkctl add nbd "nbd+unix:///?socket=$T/q.sock" --name qcow --queues 2)
fio_verify "$dev" qcow2
head -c 16M /dev/urandom > "$T/pattern"
dd if="$T/pattern" of="$dev" bs=1M seek=8 oflag=direct status=none
ublkctl del qcow
kill "$(cat "$T/qnbd.pid")"; wait "$(cat "$T/qnbd.pid")" 2>/dev/null || true
qemu-img check -q "$T/disk.qcow2" || fail "qemu-img check: the qcow2 image is not clean"
qemu-img convert -O raw "$T/disk.qcow2" "$T/expect.raw"
dd if="$T/pattern" of="$T/expect.raw" bs=1M seek=8 conv=notrunc status=none
qemu-img compare -q -f qcow2 -F raw "$T/disk.qcow2" "$T/expect.raw" ||
	fail "qemu-img compare: the qcow2 does not hold what was written through ublk"

# 5. nbd-server (config file), 2 queues; ext4 files checksummed across remove/re-add.
truncate -s 128M "$T/ns.img"
cat > "$T/nbd-server.conf" <<EOF
[generic]
user = root
group = root
unixsock = $T/ns.sock
[disk]
exportname = $T/ns.img
EOF
# (-d would serve one client only; it forks, and says where it went in its pid file.  A unix
# socket: over TCP it looks up the client's name, which in the VM waits for DNS timeouts.)
nbd-server -C "$T/nbd-server.conf" -p "$T/ns.pid" > "$T/ns.log" 2>&1
defer "kill \$(cat $T/ns.pid) 2>/dev/null || true"
wait_until 10 sock_up "$T/ns.sock" || fail "nbd-server did not start: $(cat "$T/ns.log")"
timeout 30 qemu-img info "nbd+unix:///disk?socket=$T/ns.sock" >/dev/null ||
	fail "nbd-server does not answer qemu-img: $(cat "$T/ns.log"; ps aux | grep '[n]bd-server'; journalctl -b --no-pager | grep nbd_server | tail)"
dev=$(ublkctl add nbd "nbd+unix:///disk?socket=$T/ns.sock" --name ns --queues 2) ||
	fail "nbd-server: $(cat "$T/ns.log"; ps aux | grep '[n]bd-server'; journalctl -b --no-pager | grep nbd_server | tail)"
mkfs.ext4 -q "$dev"
mkdir -p "$T/mnt"
mount "$dev" "$T/mnt"
for i in 1 2 3; do head -c $((i * 700))K /dev/urandom > "$T/mnt/f$i"; done
(cd "$T/mnt" && sha256sum f1 f2 f3) > "$T/sums"
umount "$T/mnt"
ublkctl del ns
# nbd-server serves each client in a child process; seen in the VM: a new client that comes
# while the last one's child is still going gets no handshake.  Wait for them to go.
ns_children() { [ -z "$(pgrep -P "$(cat "$T/ns.pid")")" ]; }
wait_until 20 ns_children || fail "nbd-server's children did not exit: $(pgrep -a -P "$(cat "$T/ns.pid")")"
dev=$(ublkctl add nbd "nbd+unix:///disk?socket=$T/ns.sock" --name ns) ||
	fail "nbd-server re-add: $(cat "$T/ns.log"; ps aux | grep '[n]bd-server'; journalctl -b --no-pager | grep nbd_server | tail)"
fsck.ext4 -n "$dev" >/dev/null || fail "fsck after re-add"
mount "$dev" "$T/mnt"
(cd "$T/mnt" && sha256sum -c --quiet "$T/sums") || fail "checksums differ after re-add"
umount "$T/mnt"
ublkctl del ns

# 6. TLS with a PSK: the right key works, a wrong one is refused.
psktool -u alice -p "$T/keys.psk" >/dev/null
psktool -u alice -p "$T/wrong.psk" >/dev/null
serve tls nbdkit -f -U "$T/tls.sock" --tls=require --tls-psk="$T/keys.psk" memory 64M
wait_until 10 sock_up "$T/tls.sock" || fail "nbdkit --tls did not start: $(cat "$T/tls.log")"
dev=$(ublkctl add nbd "nbds+unix://alice@/?socket=$T/tls.sock&tls-psk-file=$T/keys.psk" --name tls)
fio_verify "$dev" tls
ublkctl del tls
if out=$(ublkctl add nbd "nbds+unix://alice@/?socket=$T/tls.sock" --tls-psk-file "$T/wrong.psk" \
	--name tlsbad 2>&1); then
	fail "a wrong PSK was accepted"
fi
echo "wrong key: $out"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "not one line: $out"
no_device tlsbad || fail "a device is left after the refused TLS handshake"
journalctl -b -u ublkd --no-pager | grep -F "$(head -c 40 "$T/keys.psk" | cut -d: -f2)" &&
	fail "the PSK appears in ublkd's log"

# 7. bad inputs: one line each, within a bound, no device left.
refused() {  # refused NAME SECONDS ARGS...
	local name=$1 bound=$2 t0 t1 out
	shift 2
	t0=$(date +%s)
	if out=$(ublkctl add nbd "$@" --name "$name" 2>&1); then fail "$name: accepted: $*"; fi
	t1=$(date +%s)
	echo "$name ($((t1 - t0)) s): $out"
	[ "$(echo "$out" | wc -l)" = 1 ] || fail "$name: not one line"
	[ $((t1 - t0)) -le "$bound" ] || fail "$name: took $((t1 - t0)) s, more than $bound"
	no_device "$name" || fail "$name: a device is left"
}
refused unreachable 15 nbd://127.0.0.1:10899/x
refused badexport 15 "nbd+unix:///nosuch?socket=$T/q.sock" # qemu-nbd is gone: unreachable too
serve named nbdkit -f -U "$T/named.sock" --filter=exportname memory 16M exportname=good exportname-strict=true
wait_until 10 sock_up "$T/named.sock" || fail "nbdkit exportname did not start: $(cat "$T/named.log")"
refused wrongexport 15 "nbd+unix:///bad?socket=$T/named.sock"
refused baduri 5 "http://example.com/x"
refused badquery 5 "nbd+unix:///?socket=$T/mem.sock&foo=bar"
# a server that accepts and never answers: the connect-timeout bounds the handshake
serve mute python3 -c "import socket,time; s=socket.socket(socket.AF_UNIX); s.bind('$T/mute.sock'); s.listen(8); c=[s.accept() for _ in range(8)]; time.sleep(600)"
wait_until 10 sock_up "$T/mute.sock" || fail "mute server did not start"
refused mute 10 "nbd+unix:///?socket=$T/mute.sock" --connect-timeout 3

# 8. a polkit-authorized user over their own socket; another user's socket is refused by
# ublkctl's connect as that user, and ublkd does not connect for them.
polkit_grant_add_device nbduser
id nbdother >/dev/null 2>&1 || useradd -m nbdother
defer "userdel -r nbduser 2>/dev/null; userdel -r nbdother 2>/dev/null; true"
udir=$(mktemp -d /tmp/nbdu.XXXXXX); chown nbduser: "$udir"; chmod 700 "$udir"
odir=$(mktemp -d /tmp/nbdo.XXXXXX); chown nbdother: "$odir"; chmod 700 "$odir"
as nbduser nbdkit -U "$udir/u.sock" -P "$udir/u.pid" memory 64M
as nbdother nbdkit -U "$odir/o.sock" -P "$odir/o.pid" memory 64M
defer "kill \$(cat $udir/u.pid) \$(cat $odir/o.pid) 2>/dev/null || true"
wait_until 10 sock_up "$udir/u.sock" || fail "user's nbdkit did not start"
dev=$(as nbduser ublkctl --no-ask-password add nbd "nbd+unix:///?socket=$udir/u.sock" --name nbduser:d)
ublkctl show --json nbduser:d | jq -e '.OwnerUID != 0 and .TargetStatus == "connected"' >/dev/null ||
	fail "user device: $(ublkctl show --json nbduser:d)"
fio_verify "$dev" user
as nbduser ublkctl --no-ask-password del nbduser:d
# A user's server that never answers (writes delayed 60 s): ublkd gives up on it at 15 s, before
# the kernel's 30 s request timeout, which would SIGKILL ublkd for an unprivileged device.
as nbduser nbdkit -U "$udir/slow.sock" -P "$udir/slow.pid" --filter=delay memory 16M delay-write=60
defer "kill \$(cat $udir/slow.pid) 2>/dev/null || true"
wait_until 10 sock_up "$udir/slow.sock" || fail "user's slow nbdkit did not start"
dev=$(as nbduser ublkctl --no-ask-password add nbd "nbd+unix:///?socket=$udir/slow.sock" --name nbduser:slow)
pid=$(ublkd_pid)
t0=$(date +%s)
if as nbduser dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct status=none 2>"$T/slow.err"; then
	fail "a write to a server that does not answer succeeded"
fi
t1=$(date +%s)
echo "unanswered write: failed after $((t1 - t0)) s: $(cat "$T/slow.err")"
grep -q "Input/output error" "$T/slow.err" || fail "expected EIO: $(cat "$T/slow.err")"
[ $((t1 - t0)) -lt 28 ] || fail "the write waited $((t1 - t0)) s, into the kernel's timeout"
[ "$(ublkd_pid)" = "$pid" ] || fail "ublkd was killed (pid $pid -> $(ublkd_pid))"
ublkctl show --json nbduser:slow | jq -e '.TargetStatus == "disconnected"' >/dev/null ||
	fail "slow server: $(ublkctl show --json nbduser:slow)"
as nbduser ublkctl --no-ask-password del nbduser:slow
if out=$(as nbduser ublkctl --no-ask-password add nbd "nbd+unix:///?socket=$odir/o.sock" --name nbduser:o 2>&1); then
	fail "nbduser reached nbdother's socket"
fi
echo "other's socket: $out"
echo "$out" | grep -q "Permission denied" || fail "expected a permission error: $out"
# straight to the bus without sockets: ublkd refuses to connect for a user
if out=$(as nbduser busctl call org.ublk.ublkd1 /org/ublk/ublkd1 org.ublk.ublkd1.Manager Add 'sa{sv}' nbd 2 \
	uri s "nbd+unix:///?socket=$udir/u.sock" name s nbduser:x 2>&1); then
	fail "ublkd connected for a user: $out"
fi
echo "no sockets: $out"
echo "$out" | grep -q "ublkctl connects" || fail "expected the refusal naming ublkctl: $out"
no_device nbduser:x || fail "a device is left"

# 9. /etc/ublk/NAME.conf with target=nbd, through ublk@NAME
mkdir -p /etc/ublk
printf 'target = nbd\nuri = nbd+unix:///?socket=%s\nreconnect-timeout = 5\n' "$T/mem.sock" > /etc/ublk/nbdconf.conf
defer "systemctl stop ublk@nbdconf; rm -f /etc/ublk/nbdconf.conf"
systemctl start ublk@nbdconf || fail "ublk@nbdconf: $(journalctl -b -u ublk@nbdconf --no-pager | tail -n 5)"
ublkctl show --json nbdconf | jq -e '.Target == "nbd" and .State == "live"' >/dev/null ||
	fail "conf device: $(ublkctl show --json nbdconf)"
systemctl stop ublk@nbdconf
no_device nbdconf || fail "ublk@nbdconf stop left the device"
echo "t-nbd: all passed"
