#!/usr/bin/env bash
# together.sh CMD1 [ARGS...] --- CMD2 [ARGS...]: starts both commands at once, waits for
# both, and exits with the first non-zero status (0 if both succeeded). bench.sh times it as
# the combined floor: the bare network read and the durable writes overlapped, what a tool
# that read and wrote in parallel with no cost of its own would take.
set -u
first=()
while [ $# -gt 0 ] && [ "$1" != "---" ]; do
	first+=("$1")
	shift
done
[ $# -gt 1 ] && [ ${#first[@]} -gt 0 ] || { echo "usage: together.sh CMD1... --- CMD2..." >&2; exit 2; }
shift
"${first[@]}" &
a=$!
"$@" &
b=$!
rc=0
wait "$a" || rc=$?
wait "$b" || { s=$?; [ "$rc" -ne 0 ] || rc=$s; }
exit "$rc"
