#!/usr/bin/env bash
# txmq over RPC next to Redis Streams and NATS JetStream (issue 6), in one
# run: starts redis-server (appendonly yes, appendfsync always) and
# nats-server (-js, file storage) on free loopback ports with their data in
# a temporary directory, runs BUILD_DIR/bench/rpc_bench against them (the
# txmq servers run inside it), stops them, and prints the tables and ratios
# (also kept in bench/results/rpc_latest.md).
#
#   bench/rpc_bench.sh [BUILD_DIR] [rpc_bench flags...]
#   e.g. bench/rpc_bench.sh build --threads=1,16,64 --rounds=3
#
# Installs nothing: `scripts/dev bench` installs redis-server, nats-server,
# libhiredis-dev and libnats-dev (rpc_bench is built only where the client
# libraries are). Data goes under $TXMQ_BENCH_DIR (default /tmp).
set -euo pipefail
build=${1:-build}
[ $# -gt 0 ] && shift
cd "$(dirname "$0")/.."

die() { printf 'rpc_bench.sh: %s\n' "$*" >&2; exit 1; }

# nats-server lives in /usr/sbin, which a user's PATH may lack.
find_server() {
  command -v "$1" 2>/dev/null && return 0
  [ -x "/usr/sbin/$1" ] && { echo "/usr/sbin/$1"; return 0; }
  return 1
}
redis_server=$(find_server redis-server) ||
  die "redis-server is missing (Debian: apt-get install redis-server; or scripts/dev bench)"
nats_server=$(find_server nats-server) ||
  die "nats-server is missing (Debian: apt-get install nats-server; or scripts/dev bench)"
bench="$build/bench/rpc_bench"
[ -x "$bench" ] ||
  die "$bench is not built: it needs libhiredis-dev and libnats-dev at configure time (scripts/dev bench installs them; then ninja -C $build)"

tmp=$(mktemp -d "${TXMQ_BENCH_DIR:-/tmp}/txmq-rpc-bench-XXXXXX")
redis_pid=
nats_pid=
cleanup() {
  for pid in $redis_pid $nats_pid; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $redis_pid $nats_pid; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something accepts connections on 127.0.0.1:$1 (at most 10 s),
# or the server ($2: pid) died.
wait_port() {
  for _ in $(seq 100); do
    kill -0 "$2" 2>/dev/null || return 1
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

redis_port=$(free_port)
mkdir -p "$tmp/redis"
# save "": no RDB snapshots beside the AOF (their forks would add noise);
# the AOF with fsync before every reply is what makes XADD durable.
"$redis_server" --bind 127.0.0.1 --port "$redis_port" --dir "$tmp/redis" \
  --appendonly yes --appendfsync always --save '' --daemonize no \
  --logfile "$tmp/redis.log" &
redis_pid=$!
wait_port "$redis_port" "$redis_pid" ||
  die "redis-server did not start: $(tail -5 "$tmp/redis.log" 2>/dev/null)"

nats_port=$(free_port)
"$nats_server" -a 127.0.0.1 -p "$nats_port" -js -sd "$tmp/nats" \
  -l "$tmp/nats.log" &
nats_pid=$!
wait_port "$nats_port" "$nats_pid" ||
  die "nats-server did not start: $(tail -5 "$tmp/nats.log" 2>/dev/null)"

mkdir -p bench/results
out=bench/results/rpc_latest.md
{
  echo "Command: \`bench/rpc_bench.sh $build${*:+ $*}\`"
  echo
  echo "Servers: $("$redis_server" --version | cut -d' ' -f1-3)," \
    "$("$nats_server" --version); machine: $(nproc) x" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')," \
    "$(date -u +%Y-%m-%dT%H:%MZ)."
  echo
  TXMQ_BENCH_DIR="$tmp" "$bench" --redis="127.0.0.1:$redis_port" \
    --nats="nats://127.0.0.1:$nats_port" --redis_pid="$redis_pid" \
    --nats_pid="$nats_pid" --dir="$tmp" "$@"
} | tee "$out"
aof_rewrites=$(grep -c 'Background append only file rewriting started' \
  "$tmp/redis.log" || true)
echo
echo "(redis-server AOF rewrites during the run: $aof_rewrites)" | tee -a "$out"
echo "wrote $out" >&2
