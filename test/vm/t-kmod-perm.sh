#!/bin/bash
# Our own ublk driver (src/kernel/module): unprivileged devices (UBLK_F_UNPRIVILEGED_DEV). Who
# may send which command to root's and to users' devices, through which char node (kmod-perm.c
# sends each one as the uid given); the flags ADD_DEV negotiates, as upstream; IO limits a user
# may not set; the limit on users' devices (unprivileged_ublks_max), which DEL_DEV counts down
# also while the device's char node is held open ("held").
# Skips unless the run uses our module (vm-run --driver .../ublk_drv.ko).
# vm-timeout: 120
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"
. "$UBLKD_SRC/test/vm/kmod-lib.sh"

kmod_start
# ublkd's udev rules: what a user's char node looks like before the test gives it
install_ublkd
# kmod-perm opens /dev/ublk-control as root, then drops to the uid given (as ublkd's user
# threads do) and prints the command's result (0 or -errno).
build_kmod_perm
add_as() { # UID [noflag|usercopy|negotiate]: prints "ID FLAGS OWNER" or -errno
	./kmod-perm add "$@" || fail "kmod-perm add $*: exit $?"
}
# A user's own server needs its device's char node: ublkd's udev rules keep every /dev/ublkcN
# root's (ublkd is the server of users' devices), so the test gives it, as a standalone
# server's own rule would, once udev has handled the node's add event (which sets root 0600).
give_node() { # ID UID
	udevadm settle --timeout=20 > /dev/null 2>&1 || true
	chown "$2:$2" /dev/ublkc"$1" || fail "chown of /dev/ublkc$1 to $2"
	[ "$(stat -c '%u %a' /dev/ublkc"$1")" = "$2 600" ] || fail "/dev/ublkc$1: $(stat -c '%u %a' /dev/ublkc"$1")"
}

read -r rid rflags _ <<< "$(add_as 0)"
[[ $rid =~ ^[0-9]+$ ]] || fail "root's ADD_DEV: $rid"
(( (rflags & 0x20) == 0 )) || fail "root asked for an unprivileged device and got one ($rflags)"
for op in info params stop del; do kmod_perm_expect $EPERM $ua $op "$rid"; done
kmod_perm_expect $EPERM $ua info2 "$rid" /dev/ublkc"$rid"
kmod_perm_expect 0 0 info2 "$rid" /dev/ublkc"$rid"
kmod_perm_expect $EINVAL 0 info2 "$rid"
kmod_perm_expect 0 0 info "$rid"
echo "root's device $rid: a user gets EPERM for info, info2 (with its path), params, stop, del"

# ADD_DEV negotiates flags as upstream does: those of newer kernels (AUTO_BUF_REG,
# PER_IO_DAEMON, bit 40) are cleared, not refused; CMD_IOCTL_ENCODE and URING_CMD_COMP_IN_TASK
# come back though not asked for; USER_COPY clears NEED_GET_DATA. 6.12's in-tree driver
# answers the same request with the same flags, 0xc2.
read -r nid nflags _ <<< "$(add_as 0 negotiate)"
[[ $nid =~ ^[0-9]+$ ]] || fail "ADD_DEV refused flags of newer kernels ($nid): the in-tree driver clears them"
[ "$nflags" = 0xc2 ] || fail "ADD_DEV negotiated flags $nflags, not 0xc2 (IOCTL_ENCODE, COMP_IN_TASK, USER_COPY)"
kmod_perm_expect 0 0 del "$nid"
echo "ADD_DEV with flags of newer kernels: cleared, device $nid has flags $nflags"

r=$(add_as $ua noflag); [ "$r" = $EPERM ] || fail "a user's ADD_DEV without UBLK_F_UNPRIVILEGED_DEV: $r"
r=$(add_as $ua usercopy); [ "$r" = $EINVAL ] || fail "a user's ADD_DEV with UBLK_F_USER_COPY: $r"
read -r a aflags aowner <<< "$(add_as $ua)"
[[ $a =~ ^[0-9]+$ ]] || fail "ua's ADD_DEV: $a"
(( aflags & 0x20 )) && [ "$aowner" = $ua ] || fail "ua's device: flags $aflags owner $aowner"
read -r a2 _ <<< "$(add_as $ua)"
read -r b _ <<< "$(add_as $ub)"
[[ $a2 =~ ^[0-9]+$ && $b =~ ^[0-9]+$ ]] || fail "more user devices: $a2 $b"
for d in "$a:$ua" "$a2:$ua" "$b:$ub"; do
	give_node "${d%:*}" "${d#*:}"
done
kmod_perm_expect 0 $ua info "$a" /dev/ublkc"$a"
kmod_perm_expect 0 $ua info2 "$a" /dev/ublkc"$a"
kmod_perm_expect 0 $ua setparams "$a" /dev/ublkc"$a"
kmod_perm_expect 0 $ua params "$a" /dev/ublkc"$a"
# limits the block layer WARNs about (a user could make the kernel log a WARN at START_DEV)
kmod_perm_expect $EINVAL $ua setparams-small-io "$a" /dev/ublkc"$a"
kmod_perm_expect $EINVAL $ua setparams-dma-8k "$a" /dev/ublkc"$a"
kmod_perm_expect $EINVAL $ua info "$a"
kmod_perm_expect $EINVAL 0 stop "$a"
kmod_perm_expect 0 0 info "$a" /dev/ublkc"$a"
echo "ua's device $a: ua's commands carry its node's path; without one EINVAL, for root too; IO limits under a page refused"
for op in info stop del; do kmod_perm_expect $EACCES $ub $op "$a" /dev/ublkc"$a"; done
kmod_perm_expect $EPERM $ub del "$a" /dev/ublkc"$b"
kmod_perm_expect $EPERM $ua stop "$a" /dev/ublkc"$a2"
kmod_perm_expect $EPERM $ua stop "$a" /dev/null
kmod_perm_expect $EPERM $ua stop "$a" /dev/ublk-control
kmod_perm_expect $ENOENT $ua stop "$a" /dev/ublkc-none
echo "ub on ua's device: EACCES through its node, EPERM through ub's own node; a path to another device EPERM"

set_param unprivileged_ublks_max 3
r=$(add_as $ub); [ "$r" = $EACCES ] || fail "a fourth user device with unprivileged_ublks_max=3: $r"
read -r r2 _ <<< "$(add_as 0)"
[[ $r2 =~ ^[0-9]+$ ]] || fail "root's device refused at the user limit: $r2"
kmod_perm_expect 0 $ua del "$a2" /dev/ublkc"$a2"
read -r b2 _ <<< "$(add_as $ub)"
[[ $b2 =~ ^[0-9]+$ ]] || fail "a user device refused after one was deleted: $b2"
echo "unprivileged_ublks_max=3: the fourth EACCES, root's not counted, a delete makes room"
kmod_perm_expect 0 $ua del "$a" /dev/ublkc"$a"
kmod_perm_expect 0 $ub del "$b" /dev/ublkc"$b"
kmod_perm_expect 0 0 del "$b2" /dev/ublkc"$b2"
kmod_perm_expect 0 0 del "$rid"
kmod_perm_expect 0 0 del "$r2"

# DEL_DEV counts a user's device down, as upstream does, also while its char device is held
# open (by a server that does not close it: DEL_DEV then returns after the device's request
# timeout, 1 s here, with the id still taken): three such devices deleted, three more fit under
# unprivileged_ublks_max=3. Counted until freed instead, the fourth ADD_DEV failed with EACCES.
set_param unprivileged_io_timeout 1
held=() holders=()
for u in $ua $ua $ub; do
	read -r d _ <<< "$(add_as $u)"
	[[ $d =~ ^[0-9]+$ ]] || fail "held: ADD_DEV as $u: $d"
	held+=("$d")
done
r=$(add_as $ub); [ "$r" = $EACCES ] || fail "held: a fourth user device with unprivileged_ublks_max=3: $r"
for d in "${held[@]}"; do
	sleep 600 < /dev/ublkc"$d" &
	holders+=($!)
	wait_until 10 sh -c "readlink /proc/$!/fd/0 | grep -qx /dev/ublkc$d" || fail "held: /dev/ublkc$d not held"
done
for d in "${held[@]}"; do kmod_perm_expect 0 0 del "$d" /dev/ublkc"$d"; done
again=()
for u in $ua $ub $ub; do
	read -r d _ <<< "$(add_as $u)"
	[[ $d =~ ^[0-9]+$ ]] || fail "held: ADD_DEV as $u after DEL_DEV of 3 devices whose char device is held: $d"
	again+=("$d")
done
echo "held: 3 user devices deleted while their char devices were held (ids ${held[*]} still taken), 3 more added (${again[*]})"
kill "${holders[@]}"
wait "${holders[@]}" 2>/dev/null || true
for d in "${again[@]}"; do kmod_perm_expect 0 0 del "$d" /dev/ublkc"$d"; done
echo ok
