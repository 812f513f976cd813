#!/bin/bash
# vmtest runner (guest side, run by vmtest.service). The host's run directory is /run/vmtest:
#   in:  env    shell "export NAME=value" lines (UBLKD_SRC, UBLKD_BUILD, UBLK_DRIVER, ...)
#        tests  one test a line: NAME<TAB>SCRIPT<TAB>TIMEOUT_S (SCRIPT: path on the host's /)
#   out: started (uptime), uname, current (name of the running test), results/NAME.out (stdout+stderr),
#        results/NAME.rc ("RC SECONDS"), dmesg, journal.log (only if a test failed), done
# The console gets VMTEST-* progress lines; the kernel log a "vmtest: BEGIN/END NAME" marker.
V=/run/vmtest
con() { echo "$*" > /dev/console; }
up() { cut -d' ' -f1 /proc/uptime; }

start=$(up)
con "VMTEST-START uptime=$start kernel=$(uname -r)"
echo "$start" > "$V/started"
uname -r > "$V/uname"
set -a
[ -f "$V/env" ] && . "$V/env"
set +a
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
mkdir -p "$V/results"
failed=0

while IFS=$'\t' read -r name script tmo; do
	[ -n "$name" ] || continue
	echo "$name" > "$V/current"
	out=$V/results/$name.out
	work=/var/tmp/vmtest/$name
	mkdir -p "$work"
	con "VMTEST-BEGIN $name uptime=$(up)"
	echo "vmtest: BEGIN $name" > /dev/kmsg
	t0=$(date +%s%N)
	cursor=$(journalctl -n 0 --show-cursor --no-pager 2>/dev/null | sed -n 's/^-- cursor: //p')
	# timeout(1) runs the test in its own process group (pgid = its pid) and kills all of it:
	# SIGTERM, then SIGKILL 10 s later. 124 = timed out.
	(cd "$work" && TEST_NAME=$name TEST_TMPDIR=$work exec timeout -k 10 "$tmo" bash "$script") \
		</dev/null > "$out" 2>&1 &
	pid=$!
	if [ "${VMTEST_VERBOSE:-0}" = 1 ]; then
		tail -n +1 -f --pid="$pid" "$out" > /dev/console 2>/dev/null &
	fi
	wait "$pid"
	rc=$?
	# whatever the test left running in its process group goes now
	left=$(pgrep -a -g "$pid" | head -n 5 | tr '\n' ';')
	if [ -n "$left" ]; then
		echo "[vm-run] note: killing what $name left running: $left" >> "$out"
		pkill -KILL -g "$pid"
	fi
	t1=$(date +%s%N)
	case $rc in
	124|137) echo "[vm-run] TIMEOUT: $name did not finish within ${tmo}s (rc=$rc)" >> "$out" ;;
	esac
	# A regular file there (fio's --filename after the node went) would stop the kernel from
	# making the next node of that name: it goes, and is named.
	for f in /dev/ublkb* /dev/ublkc*; do
		[ -e "$f" ] && [ ! -b "$f" ] && [ ! -c "$f" ] || continue
		rm -f "$f"
		echo "[vm-run] note: $name left a file that is not a device at $f: removed" >> "$out"
	done
	left=$(ls /dev/ublkb* /dev/ublkc* 2>/dev/null | tr '\n' ' ')
	[ -z "$left" ] || echo "[vm-run] note: ublk devices left behind by $name: $left" >> "$out"
	# A sanitizer report from ublkd or its helpers fails the test, even when systemd restarted
	# ublkd behind it (kernel warnings are vm-run's "kernel-log" check).
	journalctl --sync 2>/dev/null
	bad=$(journalctl --no-pager -o cat ${cursor:+--after-cursor="$cursor"} 2>/dev/null |
		grep -E 'ERROR: (Address|Leak|Thread)Sanitizer|WARNING: ThreadSanitizer|Sanitizer has encountered|runtime error:|Sanitizer:DEADLYSIGNAL' |
		head -n 5)
	if [ -n "$bad" ]; then
		echo "[vm-run] FAIL: sanitizer report in the journal during $name:" >> "$out"
		echo "$bad" >> "$out"
		case $rc in 0|77) rc=1 ;; esac
	fi
	echo "vmtest: END $name rc=$rc" > /dev/kmsg
	case $rc in 0|77) ;; *) failed=1 ;; esac
	secs=$(( (t1 - t0) / 1000000 ))
	printf '%s %d.%03d\n' "$rc" $((secs / 1000)) $((secs % 1000)) > "$V/results/$name.rc"
	con "VMTEST-END $name rc=$rc uptime=$(up)"
done < "$V/tests"

rm -f "$V/current"
dmesg > "$V/dmesg" 2>&1
[ "$failed" = 0 ] || journalctl -b --no-pager -o short-monotonic > "$V/journal.log" 2>&1
echo "$(up)" > "$V/done"
con "VMTEST-DONE uptime=$(up)"
exit 0
