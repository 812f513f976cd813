# test/vm/kmod-lib.sh: helpers shared by the tests of our own ublk driver (src/kernel/module),
# test/vm/t-kmod-*.sh. Source it after lib.sh:
#     . "$UBLKD_SRC/test/vm/lib.sh"
#     . "$UBLKD_SRC/test/vm/kmod-lib.sh"
# shellcheck shell=bash
# shellcheck disable=SC2034  # variables for the tests that source this

# Users of unprivileged devices: numeric ids without accounts. The errnos as kmod-perm prints them.
ua=4201 ub=4202
EPERM=-1 ENOENT=-2 EACCES=-13 EINVAL=-22

# kmod_start: what each of these tests does first: our module loaded (load_our_driver: skips
# unless the run uses it) and, however the test ends, nothing of it left for the next one: the
# test's background jobs (servers, readers, holders) are killed and, should a device remain, the
# module is reloaded, which removes every device (t-kmod-unload checks it does) and resets the
# module's parameters. A test that passes has removed its devices itself: then this does nothing.
kmod_start() {
	load_our_driver
	defer kmod_leave_clean
}
kmod_leave_clean() {
	local p
	for p in $(jobs -p); do
		kill -9 "$p" 2> /dev/null
		wait_until 30 exited "$p" > /dev/null 2>&1
	done
	compgen -G "/sys/class/ublk-char/ublkc*" > /dev/null || return 0
	echo "$TEST_NAME left devices ($(ls /sys/class/ublk-char | tr '\n' ' ')): reloading ublk_drv" >&2
	systemctl stop ublkd 2> /dev/null
	rmmod ublk_drv && load_ublk_driver
}

# build_kmod_srv: ./srv, the RAM-disk server of test/vm/kmod-srv.c (usage above its main()).
build_kmod_srv() {
	build_c srv -I"$UBLKD_SRC/src/kernel/uapi" -I"$UBLKD_SRC/test/vm" "$UBLKD_SRC/test/vm/kmod-srv.c" \
		-luring -lpthread || fail "cannot build the test server (kmod-srv.c)"
}

# start_srv LABEL ARGS...: ./srv ARGS in the background, its log in srv.log; sets $srv_pid and,
# once the server printed it, $id. LABEL names the case in the failure message.
start_srv() {
	local label=$1
	shift
	rm -f id.txt
	./srv "$@" > id.txt 2> srv.log &
	srv_pid=$!
	wait_until 20 test -s id.txt || fail "$label: the server printed no id: $(cat srv.log)"
	id=$(cat id.txt)
}

# state ID: device ID's state as GET_DEV_INFO reports it (1 live, 2 quiesced, 3 fail-io);
# state_is ID STATE
state() { ./srv info "$1" | sed -n 's/^id=[0-9/]* state=\([0-9]*\)\/.*/\1/p'; }
state_is() { [ "$(state "$1")" = "$2" ]; }

# pins_held: user pages pinned now (FOLL_PIN), per-CPU counts folded in first.
# pins_back_to N: no more than N pinned.
pins_held() {
	echo 1 > /proc/sys/vm/stat_refresh
	awk '$1 == "nr_foll_pin_acquired" {a = $2} $1 == "nr_foll_pin_released" {r = $2} END {print a - r}' /proc/vmstat
}
pins_back_to() { [ "$(pins_held)" -le "$1" ]; }

# kprobe_count NAME FUNC: count the calls of the module's FUNC, as kprobe event NAME (tracing
# itself stays off: only the event's hits are wanted); removed when the test exits.
# kprobe_hits NAME: the calls counted so far.
kprobe_count() {
	local tr=/sys/kernel/tracing
	mountpoint -q $tr || mount -t tracefs tracefs $tr
	echo "p:$1 ublk_drv:$2" >> $tr/kprobe_events || fail "no kprobe on $2"
	defer "echo 0 > $tr/events/kprobes/$1/enable; echo '-:$1' >> $tr/kprobe_events; echo 1 > $tr/tracing_on"
	echo 0 > $tr/tracing_on
	echo 1 > $tr/events/kprobes/"$1"/enable
}
kprobe_hits() { awk -v n="$1" '$1 == n {print $2}' /sys/kernel/tracing/kprobe_profile; }

# set_param NAME VALUE: the module parameter NAME set to VALUE, as it was again when the test exits
set_param() {
	local p=/sys/module/ublk_drv/parameters/$1
	defer "echo $(cat "$p") > $p"
	echo "$2" > "$p" || fail "cannot set the module parameter $1=$2"
}
