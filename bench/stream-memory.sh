#!/usr/bin/env bash
# Peak memory (RSS high-water mark, VmHWM) of the gateway while it streams N sandbox users as
# NDJSON, for two sizes, so you can see it stays flat; plus `truto_ignore_limit=true` for 10,000
# users (one JSON answer, which must hold every record).
#
#   bench/stream-memory.sh            # release build, sizes 10000 and 100000
#
# Each size runs in a fresh `unigate serve --sandbox` process on a loopback port; the client
# (curl) reads the stream to the end and counts lines. Prints one table; asserts nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release -q -p unigate-gateway
binary=target/release/unigate

run() { # users query -> "records peak_kib seconds"
  local users="$1" query="$2" out port pid start end lines hwm
  out="$(mktemp)"
  "$binary" serve --sandbox --sandbox-users "$users" --listen 127.0.0.1:0 >"$out" 2>/dev/null &
  pid=$!
  for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
  port="$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out" | head -1)"
  start=$(date +%s.%N)
  # Records received: each carries its provider record's `uid` once, in either answer shape.
  lines=$(curl -sfN -H 'Authorization: Bearer sandbox' \
    "http://127.0.0.1:${port}/unified/user-directory/users?integrated_account_id=sandbox-cursor&${query}" | grep -o '"uid":' | wc -l)
  end=$(date +%s.%N)
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/${pid}/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$out"
  echo "$lines $hwm $(echo "$end - $start" | bc)"
}

printf '%-44s %10s %14s %9s\n' "case" "records" "peak RSS MiB" "seconds"
for users in 10000 100000; do
  read -r lines hwm secs < <(run "$users" "limit=500&truto_response_format=stream")
  printf '%-44s %10s %14.1f %9.2f\n' "stream ${users} users (pages of 500)" "$lines" "$(echo "$hwm / 1024" | bc -l)" "$secs"
done
read -r lines hwm secs < <(run 10000 "limit=500&truto_ignore_limit=true")
printf '%-44s %10s %14.1f %9.2f\n' "truto_ignore_limit 10000 users (one answer)" "$lines" "$(echo "$hwm / 1024" | bc -l)" "$secs"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(date -u +%Y-%m-%d)"
