#!/bin/bash
# Every command and long option that "ublkctl --help" names is described in ublkctl's man page
# (as an item of COMMANDS or OPTIONS, or under add) and offered by its bash completion, so that
# the docs cannot drift from the program again.
#
#     test-ctl-docs.sh UBLKCTL MAN-PAGE COMPLETION-FILE
# shellcheck disable=SC2034  # COMP_* are read by the sourced completion function
set -u

ublkctl=$1 man=$2 completion=$3
passed=0
failed=0

ok()    # ok STATUS DESCRIPTION
{
	if [ "$1" -eq 0 ]; then
		((++passed))
	else
		((++failed))
		echo "FAIL: $2"
	fi
}

help=$("$ublkctl" --help) || { echo "FAIL: $ublkctl --help exited $?"; exit 1; }
# Commands: the first word of the lines indented by two spaces between "Commands:" and the
# options; long options: every --word of the help.
mapfile -t verbs < <(sed -n '/^Commands:/,/^Options/p' <<<"$help" | sed -nE 's/^  ([a-z]+)( .*)?$/\1/p' | sort -u)
mapfile -t opts < <(grep -oE -- '--[a-z][a-z-]*' <<<"$help" | sort -u)
((${#verbs[@]} >= 10)) ; ok $? "only ${#verbs[@]} commands found in --help: ${verbs[*]}"
((${#opts[@]} >= 15)) ; ok $? "only ${#opts[@]} long options found in --help: ${opts[*]}"

# The man page as text: "\-" is "-", font changes and quotes go.
text=$(sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\(em//g' "$man")
# The line after each .TP: the items of COMMANDS and OPTIONS (and of add's options).
items=$(awk 'tp { print; tp = 0 } /^\.TP/ { tp = 1 }' <<<"$text" | tr -d '"')
for v in "${verbs[@]}"; do
	grep -qE "^\.B[IR]?[[:space:]]+$v( |$)" <<<"$items"
	ok $? "command '$v' has no item in $man"
done
for o in "${opts[@]}"; do
	grep -qE -- "(^|[^a-z-])$o([^a-z-]|$)" <<<"$items"
	ok $? "option '$o' has no item in $man"
done

# The completion: what it offers for the command word, after "ublkctl -" and after
# "ublkctl add loop FILE -" (every option of add, loop's included, and the global ones).
# shellcheck source=/dev/null
. "$completion"
comp()  # comp WORD...: COMPREPLY for the last WORD
{
	COMP_WORDS=("$@")
	COMP_CWORD=$(($# - 1))
	COMP_LINE="$*"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	_ublkctl ublkctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
}
comp ublkctl ''
offered=" ${COMPREPLY[*]} "
for v in "${verbs[@]}"; do
	[[ $offered == *" $v "* ]]
	ok $? "the completion does not offer command '$v' (offers:$offered)"
done
comp ublkctl -
offered=" ${COMPREPLY[*]} "
# Each target's own options are offered after that target only.
for t in $__ublkctl_targets; do
	comp ublkctl add "$t" arg -
	offered+=" ${COMPREPLY[*]} "
done
for o in "${opts[@]}"; do
	[[ $offered == *" $o "* ]]
	ok $? "the completion does not offer option '$o'"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
