#!/bin/bash
# The bash completion of ublkctl (shell-completion/bash/ublkctl): sets COMP_WORDS & co. for
# command lines, calls the completion function and checks COMPREPLY. Device names come from a
# fake "ublkctl --json=short list" first in PATH, the NAMEs of "up" from a directory of NAME.conf files
# put in place of /etc/ublk. Runs without the bash-completion package; if it is
# installed, the same cases run once more with its helpers (_init_completion, _filedir) loaded.
#
#     test-completion.sh [COMPLETION-FILE]
# shellcheck disable=SC2034  # COMP_* are read by the sourced completion function
set -u

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
completion=${1:-$src/shell-completion/bash/ublkctl}
[ -r "$completion" ] || {
	echo "FAIL: no completion file $completion"
	exit 1
}

passed=0
failed=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# ok COND-STATUS DESCRIPTION
ok()
{
	if [ "$1" -eq 0 ]; then
		((++passed))
	else
		((++failed))
		echo "FAIL [$pass]: $2"
	fi
}

# comp WORD...: complete the last WORD (cursor at its end); result in COMPREPLY. A word "=" is
# glued to its neighbours in COMP_LINE, as bash splits "--opt=value" into "--opt" "=" "value".
comp()
{
	local w last=''

	COMP_WORDS=("$@")
	COMP_CWORD=$(($# - 1))
	COMP_LINE=''
	for w; do
		[[ -z $COMP_LINE || $w == = || $last == = ]] || COMP_LINE+=' '
		COMP_LINE+=$w
		last=$w
	done
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	_ublkctl ublkctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
}

# reply: COMPREPLY sorted, on one line
reply()
{
	printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}

# comp_line LINE: comp with the words of LINE (an empty last one if LINE ends with a blank)
comp_line()
{
	local -a w

	read -ra w <<<"$1"
	[[ $1 == *' ' ]] && w+=('')
	comp "${w[@]}"
}

# has LINE WORD...: completing LINE offers (at least) every WORD
has()
{
	local line=$1 w missing=''
	shift
	comp_line "$line"
	for w in "$@"; do
		[[ " ${COMPREPLY[*]} " == *" $w "* ]] || missing+=" $w"
	done
	ok "$([ -z "$missing" ]; echo $?)" "'$line' lacks$missing (got: $(reply))"
}

# lacks LINE WORD...: completing LINE offers none of the WORDs
lacks()
{
	local line=$1 w extra=''
	shift
	comp_line "$line"
	for w in "$@"; do
		[[ " ${COMPREPLY[*]} " == *" $w "* ]] && extra+=" $w"
	done
	ok "$([ -z "$extra" ]; echo $?)" "'$line' offers$extra (got: $(reply))"
}

# is LINE [WORD...]: completing LINE offers exactly the WORDs (in any order)
is()
{
	local line=$1 want got
	shift
	comp_line "$line"
	want=$(printf '%s\n' "$@" | sort | tr '\n' ' ' | sed 's/ $//')
	got=$(reply)
	ok "$([ "$got" = "$want" ]; echo $?)" "'$line' offers '$got', not '$want'"
}

# A ublkctl that answers "--json=short list" like a ublkd with five devices (alice's USER:NAME
# is offered by its id only: bash splits words at ':').
mkdir "$tmp/bin" "$tmp/down" "$tmp/files" "$tmp/conf" "$tmp/conf-empty"
cat >"$tmp/bin/ublkctl" <<'EOF'
#!/bin/sh
[ "$*" = "--json=short list" ] || exit 2
printf '%s' '[{"Id":0,"Name":"disk0","Target":"loop","State":"live","BlockDevice":"/dev/ublkb0"},'
printf '%s' '{"Id":1,"Name":"scratch","Target":"null","State":"stopped","BlockDevice":""},'
printf '%s' '{"Id":7,"Name":"","Target":"null","State":"stopped","BlockDevice":""},'
printf '%s' '{"Id":9,"Name":"alice:disk","Target":"null","State":"stopped","BlockDevice":""},'
printf '%s\n' '{"Id":12,"Name":"db.v2-x_y","Target":"loop","State":"live","BlockDevice":"/dev/ublkb12"}]'
EOF
# One with ublkd not running.
cat >"$tmp/down/ublkctl" <<'EOF'
#!/bin/sh
echo "ublkctl: ublkd is not running: systemctl start ublkd" >&2
exit 1
EOF
chmod +x "$tmp/bin/ublkctl" "$tmp/down/ublkctl"
: >"$tmp/files/disk.img"
: >"$tmp/files/data.raw"
# /etc/ublk for "up": valid NAMEs, and files "ublkctl up" would not take.
long64=$(printf 'n%.0s' {1..64})
for f in data db.v2-x_y scratch 7 "$long64" .hidden -x "bad name" "${long64}x"; do
	echo 'target = null' >"$tmp/conf/$f.conf"
done
mkdir "$tmp/conf/dir.conf"
: >"$tmp/conf/notes.txt"
: >"$tmp/conf/data.conf.bak"

run_cases()
{
	local out=$tmp/out

	# Global options and commands.
	is 'ublkctl ' add list show start stop recover del up down features
	is 'ublkctl s' show start stop
	is 'ublkctl u' up
	is 'ublkctl d' del down
	is 'ublkctl --js' --json
	has 'ublkctl -' -h --help --version -j --json --no-legend --no-ask-password
	is 'ublkctl --no' --no-ask-password --no-legend
	is 'ublkctl --json=' pretty short off
	is 'ublkctl --json=s' short
	is 'ublkctl list --json=p' pretty
	has 'ublkctl --no-ask-password ' add del stop
	has 'ublkctl --json ' add list show
	is 'ublkctl --version '

	# add
	is 'ublkctl add ' null loop nbd qcow2 rbd
	is 'ublkctl add l' loop
	is 'ublkctl add loop --dir' --direct-io
	has 'ublkctl add loop --' --size --queues --depth --logical-block-size --name --read-only \
		--no-start --offset --direct-io --zero-copy --recovery
	has 'ublkctl add null --' --size --queues --depth --logical-block-size --name --read-only \
		--no-start --zero-copy
	lacks 'ublkctl add null --' --offset --direct-io
	lacks 'ublkctl add --' --offset --direct-io
	has 'ublkctl add null --' --no-ask-password --json
	lacks 'ublkctl add null ' --no-ask-password
	has 'ublkctl add null ' --size
	lacks 'ublkctl add null --size 1G --' --offset
	has 'ublkctl add --size 1G loop --' --offset --direct-io
	has 'ublkctl add loop disk.img ' --offset --direct-io
	is 'ublkctl add loop --direct-io ' auto on off
	is 'ublkctl add loop --direct-io o' on off
	is 'ublkctl add loop --dir o' on off
	is 'ublkctl add null --zero-copy ' auto on off
	is 'ublkctl add null --recovery ' reissue fail-io none
	is 'ublkctl add null --logical-block-size ' 512 1024 2048 4096
	is 'ublkctl add null --size '
	is 'ublkctl add loop --name '
	# "--direct-io=o": bash splits the "=" off into a word of its own.
	comp ublkctl add loop --direct-io = o
	ok "$([ "$(reply)" = "off on" ]; echo $?)" "'--direct-io=o' offers '$(reply)', not 'off on'"
	comp ublkctl add loop --direct-io =
	ok "$([ "$(reply)" = "auto off on" ]; echo $?)" "'--direct-io=' offers '$(reply)'"
	comp ublkctl add loop --offset = 1 "$tmp/files/d"
	ok "$([ "$(reply)" = "$tmp/files/data.raw $tmp/files/disk.img" ]; echo $?)" \
		"'--offset=1 FILE' offers '$(reply)'"
	# The backing file of loop: file names.
	is "ublkctl add loop $tmp/files/d" "$tmp/files/data.raw" "$tmp/files/disk.img"
	is "ublkctl add --read-only loop --queues 2 $tmp/files/di" "$tmp/files/disk.img"
	is "ublkctl add null $tmp/files/d"
	# qcow2's IMAGE: file names; then its own option.
	is "ublkctl add qcow2 $tmp/files/di" "$tmp/files/disk.img"
	has 'ublkctl add qcow2 disk.qcow2 --' --metadata-cache --read-only --queues
	lacks 'ublkctl add qcow2 disk.qcow2 --' --offset --direct-io --connect-timeout
	# rbd: its own options, files for its conf and keyring, no file for its IMAGE.
	has 'ublkctl add rbd --' --ceph-conf --ceph-id --keyring --mon-host --io-timeout --connect-timeout
	lacks 'ublkctl add loop --' --ceph-conf --keyring
	is "ublkctl add rbd --keyring $tmp/files/di" "$tmp/files/disk.img"
	is "ublkctl add rbd $tmp/files/d"

	# up: the NAMEs of /etc/ublk/NAME.conf, without asking ublkd (no ublkctl in PATH).
	[ "$__ublkctl_conf_dir" = /etc/ublk ]
	ok $? "the completion reads '$__ublkctl_conf_dir', not /etc/ublk"
	local __ublkctl_conf_dir=$tmp/conf
	local want
	PATH=$tmp/nonexistent comp ublkctl up ''
	want=$(printf '%s\n' data db.v2-x_y scratch 7 "$long64" | sort | tr '\n' ' ' | sed 's/ $//')
	ok "$([ "$(reply)" = "$want" ]; echo $?)" "'ublkctl up ' offers '$(reply)', not '$want'"
	is 'ublkctl up d' data db.v2-x_y
	is 'ublkctl --json up s' scratch
	is 'ublkctl up data '
	is 'ublkctl up -j'  -j
	has 'ublkctl up -' --no-ask-password --help
	lacks 'ublkctl up -' --size
	is 'ublkctl up .'
	__ublkctl_conf_dir=$tmp/conf-empty
	is 'ublkctl up '
	# A missing directory, with the user's failglob on: nothing offered, nothing printed, and
	# the glob options left as they were.
	__ublkctl_conf_dir=$tmp/nonexistent
	shopt -s failglob
	comp ublkctl up '' >"$out" 2>&1
	ok "$([ ${#COMPREPLY[@]} -eq 0 ] && [ ! -s "$out" ]; echo $?)" \
		"no conf dir: 'ublkctl up ' offers '$(reply)', prints '$(cat "$out")'"
	shopt -q failglob && ! shopt -q nullglob
	ok $? "glob options after 'ublkctl up ': $(shopt -p failglob nullglob | tr '\n' ' ')"
	shopt -u failglob
	__ublkctl_conf_dir=$tmp/conf

	# Devices, from the fake ublkctl.
	local PATH=$tmp/bin:$PATH
	is 'ublkctl start ' scratch 1 7 9
	is 'ublkctl stop ' disk0 0 db.v2-x_y 12
	is 'ublkctl del ' disk0 0 scratch 1 7 9 db.v2-x_y 12
	is 'ublkctl recover ' disk0 0 scratch 1 7 9 db.v2-x_y 12
	is 'ublkctl show ' disk0 0 scratch 1 7 9 db.v2-x_y 12
	# Options anywhere: after the command, before the device, and after it.
	is 'ublkctl stop --no-ask-password ' disk0 0 db.v2-x_y 12
	is 'ublkctl stop disk0 --no-a' --no-ask-password
	is 'ublkctl stop disk0 --no-ask-password '
	is 'ublkctl show -j d' disk0 db.v2-x_y
	is 'ublkctl --json show d' disk0 db.v2-x_y
	is 'ublkctl show --json 1' 1 12
	is 'ublkctl show --j' --json
	is 'ublkctl show disk0 '
	is 'ublkctl del 1' 1 12
	is 'ublkctl start s' scratch
	is 'ublkctl stop s'
	is 'ublkctl del disk0 '
	is 'ublkctl features '
	# down: names only (the unnamed device 7 has none), whatever the state.
	is 'ublkctl down ' disk0 scratch db.v2-x_y
	is 'ublkctl down d' disk0 db.v2-x_y
	is 'ublkctl down 1'
	is 'ublkctl down disk0 '
	is 'ublkctl list ' --json --no-legend
	is 'ublkctl list --json ' --no-legend
	is 'ublkctl list -j --no-legend '
	is 'ublkctl --no-legend list ' --json

	# ublkd not running, or no ublkctl at all: nothing offered, nothing printed.
	PATH=$tmp/down:$PATH
	comp ublkctl del '' >"$out" 2>&1
	ok "$([ ${#COMPREPLY[@]} -eq 0 ] && [ ! -s "$out" ]; echo $?)" \
		"ublkd down: 'ublkctl del ' offers '$(reply)', prints '$(cat "$out")'"
	comp ublkctl down '' >"$out" 2>&1
	ok "$([ ${#COMPREPLY[@]} -eq 0 ] && [ ! -s "$out" ]; echo $?)" \
		"ublkd down: 'ublkctl down ' offers '$(reply)', prints '$(cat "$out")'"
	PATH=$tmp/nonexistent comp ublkctl start '' >"$out" 2>&1
	ok "$([ ${#COMPREPLY[@]} -eq 0 ] && [ ! -s "$out" ]; echo $?)" \
		"no ublkctl: 'ublkctl start ' offers '$(reply)', prints '$(cat "$out")'"
}

# Pass 1: plain bash.
pass=plain
# shellcheck source=/dev/null
. "$completion"
[ "$(complete -p ublkctl 2>/dev/null)" = "complete -F _ublkctl ublkctl" ]
ok $? "'complete -p ublkctl' is '$(complete -p ublkctl 2>/dev/null)'"
run_cases

# Pass 2: with bash-completion's helpers, if the package is installed.
bash_completion=${BASH_COMPLETION_SCRIPT:-/usr/share/bash-completion/bash_completion}
if [ -r "$bash_completion" ]; then
	pass=bash-completion
	# shellcheck source=/dev/null
	. "$bash_completion"
	# shellcheck source=/dev/null
	. "$completion"
	if declare -F _init_completion >/dev/null; then
		run_cases
	else
		ok 1 "$bash_completion defines no _init_completion"
	fi
else
	echo "(bash-completion not installed: only the plain-bash pass)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
