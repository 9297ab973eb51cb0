# bench/lib.sh: helpers shared by the benchmark scripts (sourced, not run).
#   bench_need NAME FILE...   exits with a message unless each FILE is executable
#   bench_port [OFFSET...]    a loopback port P, below Linux's ephemeral range
#                             (32768-60999, where outgoing connections take their
#                             ports), with P+OFFSET free for every OFFSET too
#   median                    the median of the numbers on stdin ("-" if none)
#   bench_machine             one line: cores, memory, kernel
#   bench_workdir DIR PREFIX  sets $work to a new directory DIR/PREFIX.XXXXXX and,
#                             on exit, kills the server whose pid is in $pid (if
#                             any) and removes $work

bench_need() {
  local name="$1"; shift
  for f in "$@"; do
    [ -x "$f" ] || { echo "$name: $f missing (build first)" >&2; exit 1; }
  done
}

bench_port_free() { ! (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }

bench_port() {
  while true; do
    local p=$(( 10000 + RANDOM % 20000 )) ok=1 o
    for o in 0 "$@"; do bench_port_free $((p + o)) || { ok=0; break; }; done
    [ "$ok" = 1 ] && { echo "$p"; return; }
  done
}

median() {
  sort -g | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'
}

bench_machine() {
  echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
}

bench_workdir() {
  work="$(mktemp -d "$1/$2.XXXXXX")"
  pid=""
  trap '[ -n "$pid" ] && kill -9 "$pid" 2> /dev/null; rm -rf "$work"' EXIT
}
