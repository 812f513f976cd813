#!/bin/bash
# test/vm/kernel-log-check, the judge of every VM run's kernel log: made-up logs in the format
# of the guest's dmesg (with the "vmtest: BEGIN/END" marks the guest writes), each with the exit
# status and lines the check must give.
#
#     test-kernel-log.sh [KERNEL-LOG-CHECK]
set -u

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
check=${1:-$src/test/vm/kernel-log-check}
[ -x "$check" ] || { echo "FAIL: $check is not executable"; exit 1; }

passed=0
failed=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# expect NAME STATUS OUTPUT: the check on $tmp/log exits STATUS and prints exactly OUTPUT
expect()
{
	local out rc
	out=$("$check" "$tmp/log" 2>&1)
	rc=$?
	if [ "$rc" = "$2" ] && [ "$out" = "$3" ]; then
		((++passed))
		echo "ok: $1"
	else
		((++failed))
		printf 'FAIL: %s\n  expected status %s, output:\n%s\n  got status %s, output:\n%s\n' \
			"$1" "$2" "$3" "$rc" "$out"
	fi
}

# warning_db TIME EFLAGS: a #DB WARNING from exc_debug_kernel with its register dump
warning_db()
{
	cat <<EOF
[ $1] ------------[ cut here ]------------
[ $1] WARNING: CPU: 1 PID: 4242 at arch/x86/kernel/traps.c:1090 exc_debug_kernel+0x136/0x1a0
[ $1] Modules linked in: ublk_drv(OE) null_blk
[ $1] CPU: 1 UID: 0 PID: 4242 Comm: (udev-worker) Tainted: G           OE      6.12.95+deb12-amd64 #1
[ $1] RIP: 0010:exc_debug_kernel+0x136/0x1a0
[ $1] Code: 0f 0b e9 41 ff ff ff 0f 0b 48 89 df e8 00 00 00 00 eb b0
[ $1] RSP: 0018:ffffb1c2c0003f58 EFLAGS: $2
[ $1] RAX: 0000000000000000 RBX: ffffb1c2c0003f58 RCX: 0000000000000000
[ $1] ---[ end trace 0000000000000000 ]---
EOF
}

begin() { echo "[ $1] vmtest: BEGIN $2"; }
end() { echo "[ $1] vmtest: END $2"; }

{
	echo "[    0.000000] Linux version 6.12.95+deb12-amd64"
	begin 5.100000 t-a
	echo "[    6.000000] ublkb0: p1"
	end 7.000000 t-a
} > "$tmp/log"
expect "a clean log passes, silently" 0 ""

{
	begin 5.100000 t-a
	echo "[    6.000000] WARNING: CPU: 0 PID: 17 at block/blk-mq.c:2100 blk_mq_start_request+0x10/0x20"
	end 7.000000 t-a
} > "$tmp/log"
expect "a WARNING fails, named by its test" 1 \
	"! [t-a] [    6.000000] WARNING: CPU: 0 PID: 17 at block/blk-mq.c:2100 blk_mq_start_request+0x10/0x20"

{
	echo "[    1.000000] BUG: kernel NULL pointer dereference, address: 0000000000000008"
	begin 5.100000 t-a
	end 7.000000 t-a
	echo "[  130.000000] INFO: task fio:321 blocked for more than 120 seconds."
} > "$tmp/log"
expect "at boot and after a test: named so" 1 \
	"! [boot] [    1.000000] BUG: kernel NULL pointer dereference, address: 0000000000000008
! [after t-a] [  130.000000] INFO: task fio:321 blocked for more than 120 seconds."

{
	begin 5.100000 t-churn
	warning_db "812.345700" c088a002
	end 900.000000 t-churn
} > "$tmp/log"
expect "a #DB with reserved EFLAGS bits (TCG's fault) is printed as ignored and passes" 0 \
	"~ [t-churn] [ 812.345700] WARNING: CPU: 1 PID: 4242 at arch/x86/kernel/traps.c:1090 exc_debug_kernel+0x136/0x1a0 (EFLAGS c088a002: reserved bits set)"

{
	begin 5.100000 t-churn
	warning_db "812.345700" 00000346
	end 900.000000 t-churn
} > "$tmp/log"
expect "a #DB with possible EFLAGS (TF set, no reserved bit) fails" 1 \
	"! [t-churn] [ 812.345700] WARNING: CPU: 1 PID: 4242 at arch/x86/kernel/traps.c:1090 exc_debug_kernel+0x136/0x1a0"

{
	begin 5.100000 t-churn
	warning_db "812.345700" c088a002
	warning_db "813.000000" 00000346
	echo "[  814.000000] refcount_t: underflow; use-after-free."
	end 900.000000 t-churn
} > "$tmp/log"
expect "an ignored #DB does not hide the next #DB's EFLAGS, nor other problems" 1 \
	"~ [t-churn] [ 812.345700] WARNING: CPU: 1 PID: 4242 at arch/x86/kernel/traps.c:1090 exc_debug_kernel+0x136/0x1a0 (EFLAGS c088a002: reserved bits set)
! [t-churn] [ 813.000000] WARNING: CPU: 1 PID: 4242 at arch/x86/kernel/traps.c:1090 exc_debug_kernel+0x136/0x1a0
! [t-churn] [  814.000000] refcount_t: underflow; use-after-free."

{
	begin 5.100000 t-a
	echo "[    6.000000] WARNING: CPU: 0 PID: 17 at kernel/foo.c:1 bar+0x0/0x1"
	echo "[    6.000001] RSP: 0018:ffffb1c2c0003f58 EFLAGS: c088a002"
} > "$tmp/log"
expect "reserved EFLAGS excuse only a #DB, not any WARNING" 1 \
	"! [t-a] [    6.000000] WARNING: CPU: 0 PID: 17 at kernel/foo.c:1 bar+0x0/0x1"

rm -f "$tmp/log"
expect "no log is an error, not a pass" 2 "kernel-log-check: cannot read $tmp/log"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
