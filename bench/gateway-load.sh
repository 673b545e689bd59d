#!/usr/bin/env bash
# Throughput and latency of the gateway's unified list against two baselines, on one machine:
#
#   direct      wrk -> static provider (nginx serving one Okta users page from a file)
#   nginx hop   wrk -> nginx proxy_pass (WORKERS workers, upstream keep-alive) -> static provider
#   unigate     wrk -> unigate GET /unified/user-directory/users?...&limit=100 (WORKERS workers)
#                  -> static provider
#
#   bench/gateway-load.sh                    # run by hand, not in CI; takes about 3.5 minutes
#   DURATION=30 CONNS=32 bench/gateway-load.sh
#
# PROFILE=1 bench/gateway-load.sh profiles unigate under the throughput load with perf instead
# (CALLGRAPH=1 as well records call graphs and prints who calls the allocator)
# of measuring, and prints the top symbols and the split of its CPU into a few buckets (parsing,
# the mapping evaluator, writing, allocation, HTTP and runtime, kernel). PERF_DATA=FILE keeps
# the recording there for `perf report -i FILE`. CALLGRIND=1 instead counts the instructions
# unigate executes per request under valgrind's callgrind (REQUESTS, default 100, one at a time
# after a warm-up): the comparison to use when the machine's timings are too noisy;
# CALLGRIND_OUT=FILE keeps the count there for `callgrind_annotate FILE`.
#
# Settings (environment): DURATION (s, default 15) per measured run, after WARMUP (s, default 3)
# of the same load that is not counted; THREADS (2) load-generator threads; CONNS (16) connections
# for the throughput runs; LOW_CONNS (2) connections for the low-load latency runs; WORKERS (1):
# the nginx hop's worker processes and unigate's `server.workers`, the same count for both, so
# the ratio compares like with like (before 2026-12-05's last session unigate ran with tokio's
# default, one worker per core, against the hop's one); NICE (0): run
# every process of the benchmark (servers and load generator) under `nice -n NICE`, e.g. NICE=-10
# as root on a machine where other work (a build) is running, to keep it from skewing the numbers;
# UNIGATE_BIN: measure that unigate binary instead of building this checkout (a before/after
# pair on one machine: build the older commit in a worktree, then run once with each binary);
# USERS (100, at most 200, Okta's largest page): users on the provider page, e.g. USERS=1 to see
# the cost of a request apart from its records; RATIO_ROUNDS (6) and RATIO_SECONDS (3): after the
# table's runs, that many pairs of runs of that length (each after 1 s of warm-up), the nginx hop
# and unigate back to back at CONNS connections, the first of the two alternating, summed up as
# the median of the pairs' ratios (0 pairs: none). The table's ratio divides two runs made 13-18 s
# apart; on a machine whose speed drifts that much, the interleaved median is the one to quote.
#
# COMPARE_BIN=OTHER_BINARY compares two builds by time instead: unigate (UNIGATE_BIN or this
# checkout's build) and OTHER_BINARY run side by side on the same provider, measured in turn
# ROUNDS (8) times each at CONNS connections for DURATION seconds (after WARMUP), and it prints
# each round and the median, lowest and highest of OTHER_BINARY's rate and CPU a request over
# the first's. Both must answer the page alike (status and size) or it stops. One run on this
# kind of machine moves by 5-10% from the next, so a change of a few percent shows only in the
# median of alternating rounds, never in two runs.
#
# The provider page is USERS (100) users made deterministically from the Okta fixture records
# (tests/fixtures/okta/two-pages/page*.json): new ids, names, emails and shifted timestamps,
# compact JSON like Okta's, about 86 KB for 100. It is one page: no Link header, so unigate
# makes exactly one provider call per request. The static provider is nginx with worker_processes 1 and the
# proxy nginx with WORKERS, access logs off; unigate runs with UNIGATE_LOG=warn so its per-request
# info logs stay out of the measurement. Everything listens on 127.0.0.1 only and shares the
# machine's cores with the load generator (on a 2-core machine the numbers are relative, not
# capacity figures). "server CPU/req" is the CPU time (user+sys, from /proc) of every server
# process in the path divided by the requests served in the measured run.
#
# Needs root (or the tools already present) to apt-get install wrk (or oha) and nginx; builds
# unigate in release. Prints one table; asserts nothing beyond every answer being a 200.
# Cleans up every process it started on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"

DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-3}"
THREADS="${THREADS:-2}"
CONNS="${CONNS:-16}"
LOW_CONNS="${LOW_CONNS:-2}"
WORKERS="${WORKERS:-1}"
USERS="${USERS:-100}"
ROUNDS="${ROUNDS:-8}"
NICE="${NICE:-0}"
RATIO_ROUNDS="${RATIO_ROUNDS:-6}"
RATIO_SECONDS="${RATIO_SECONDS:-3}"
TOKEN="bench-api-token-0123456789"

say() { echo "gateway-load: $*" >&2; }
if ! [[ "$USERS" =~ ^[0-9]+$ ]] || [ "$USERS" -lt 1 ] || [ "$USERS" -gt 200 ]; then
  say "USERS must be a number of users from 1 to 200 (Okta's largest page), not '$USERS'"
  exit 2
fi
if ! [[ "$RATIO_ROUNDS" =~ ^[0-9]+$ ]] || ! [[ "$RATIO_SECONDS" =~ ^[1-9][0-9]*$ ]]; then
  say "RATIO_ROUNDS must be a number of pairs (0 for none) and RATIO_SECONDS a number of seconds (1 or more), not '$RATIO_ROUNDS' and '$RATIO_SECONDS'"
  exit 2
fi
if [ -n "${COMPARE_BIN:-}" ] && ! [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]]; then
  say "ROUNDS must be a number of rounds (1 or more), not '$ROUNDS'"
  exit 2
fi
if [ -n "${COMPARE_BIN:-}" ] && [ ! -x "$COMPARE_BIN" ]; then
  say "COMPARE_BIN: no executable at '$COMPARE_BIN'"
  exit 2
fi
if [ -n "${COMPARE_BIN:-}" ] && { [ "${PROFILE:-0}" = 1 ] || [ "${CALLGRIND:-0}" = 1 ]; }; then
  say "COMPARE_BIN compares two builds by time; run PROFILE=1 or CALLGRIND=1 once for each build (UNIGATE_BIN) instead"
  exit 2
fi

# ---------------------------------------------------------------------------------------------
# 1. Tools.
apt_updated=0
apt_install() { # package -> 0 when it installed
  command -v apt-get >/dev/null || return 1
  if ! apt-get install -y -q "$1" >/dev/null 2>&1; then
    if [ "$apt_updated" = 0 ]; then
      apt_updated=1
      apt-get update -q >/dev/null 2>&1 || true
    fi
    apt-get install -y -q "$1" >/dev/null 2>&1 || return 1
  fi
}

NGINX="$(command -v nginx || true)"
[ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx
if [ -z "$NGINX" ]; then
  say "installing nginx (apt-get)"
  apt_install nginx || apt_install nginx-light || { say "cannot install nginx; install it and run again"; exit 1; }
  NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
fi

LOADGEN=""
if command -v wrk >/dev/null; then LOADGEN=wrk
elif command -v oha >/dev/null; then LOADGEN=oha
else
  say "installing wrk (apt-get)"
  if apt_install wrk; then LOADGEN=wrk
  elif apt_install oha; then LOADGEN=oha
  else
    say "neither wrk nor oha could be installed (apt-get install wrk failed, no oha package);"
    say "install one (e.g. 'cargo install oha') and run again"
    exit 1
  fi
fi

if ! command -v python3 >/dev/null; then
  say "installing python3 (apt-get), used to generate the provider page"
  apt_install python3 || { say "cannot install python3; install it and run again"; exit 1; }
fi

if [ -n "${UNIGATE_BIN:-}" ]; then
  binary="$UNIGATE_BIN"
  say "measuring $binary (UNIGATE_BIN), not this checkout's build"
else
  say "building unigate (release)"
  cargo build --release -q -p unigate-gateway
  binary="$repo/target/release/unigate"
fi

# ---------------------------------------------------------------------------------------------
# Processes and cleanup.
tmp="$(mktemp -d /tmp/unigate-gateway-load.XXXXXX)"
chmod 755 "$tmp" # nginx workers run as an unprivileged user and read the page from here
pids=()
loadgen_pid=""
cleanup() {
  local pid
  [ -n "$loadgen_pid" ] && kill -TERM "$loadgen_pid" 2>/dev/null
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'say "failed at line $LINENO: $BASH_COMMAND"' ERR

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # url [curl args...]
  local url="$1"; shift
  for _ in $(seq 100); do
    curl -sf -o /dev/null "$@" "$url" && return 0
    sleep 0.05
  done
  say "no answer from $url"; return 1
}

# CPU ticks (user+sys) of a process and its children (an nginx master and its worker).
cpu_ticks() {
  local total=0 pid t
  for pid in "$@" $(for p in "$@"; do ps -o pid= --ppid "$p" 2>/dev/null || true; done); do
    t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}
CLK_TCK="$(getconf CLK_TCK)"

# ---------------------------------------------------------------------------------------------
# 2. The static provider: one page of 100 Okta users.
page="$tmp/users.json"
python3 - "$repo/tests/fixtures/okta/two-pages" "$page" "$USERS" <<'PY'
import datetime, hashlib, json, re, sys

fixtures, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
templates = []
# The DEPROVISIONED user (page 6, the second pass) in the place it had on page 4 before the
# fixture walked passes, so that the page is byte for byte the one earlier runs measured.
for k in (1, 2, 3, 4, 6, 5):
    templates += json.load(open(f"{fixtures}/page{k}.json"))
FIRST = ["Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kofi",
         "Lena", "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera",
         "Wei", "Yara", "Zoe"]
LAST = ["Okafor", "Lindqvist", "Moreau", "Tanaka", "Silva", "Novak", "Brennan", "Haddad",
        "Kowalski", "Nguyen", "Fischer", "Rossi", "Iyer", "Campbell", "Mendes", "Sato", "Keller",
        "Duarte", "Olsen"]
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

def okta_id(i):  # 20 characters, 00u…0g4, like Okta's
    h = int.from_bytes(hashlib.sha256(f"bench-user-{i}".encode()).digest()[:16], "big")
    s = ""
    for _ in range(14):
        h, r = divmod(h, 62)
        s += B62[r]
    return "00u" + s + "0g4"

ISO = re.compile(r'"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)"')

def shift(m, hours):
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
    t += datetime.timedelta(hours=hours)
    return '"' + t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z" + '"'

# Which fixture record each user starts from: every status, the richest record (all profile
# attributes) one time in 20, chosen so that the page weighs about 86 KB (Okta: ~870 B a user).
ORDER = [0, 1, 4, 5, 6, 7, 8, 4, 8, 8, 2, 4, 7, 8, 5, 0, 6, 8, 4, 7]
records = []
for i in range(n):
    t = templates[ORDER[i % len(ORDER)]]
    first, last = FIRST[i % len(FIRST)], LAST[(i * 7) % len(LAST)]
    old_local = t["profile"]["login"].split("@")[0]
    s = json.dumps(t, separators=(",", ":"))
    s = s.replace(t["id"], okta_id(i)).replace(old_local, f"{first}.{last}{i}".lower())
    s = ISO.sub(lambda m: shift(m, 7 * i), s)
    r = json.loads(s)
    r["profile"]["firstName"], r["profile"]["lastName"] = first, last
    if "displayName" in r["profile"]:
        r["profile"]["displayName"] = f"{first} {last}"
    records.append(r)
with open(out, "w") as f:
    f.write(json.dumps(records, separators=(",", ":")))
PY
chmod 644 "$page"

static_port="$(free_port)"
mkdir -p "$tmp/static" "$tmp/proxy"
cat >"$tmp/static/nginx.conf" <<EOF
# The static provider. One worker; it serves a file from the page cache with sendfile, so it is
# not the bottleneck (the direct case below shows its ceiling). No tcp_nopush: with sendfile and
# keep-alive it holds the last partial segment until the client's delayed ACK, adding ~40 ms
# to some answers (seen here as a 40 ms p99).
worker_processes 1;
pid $tmp/static/nginx.pid;
error_log $tmp/static/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  client_body_temp_path $tmp/static/body;
  proxy_temp_path $tmp/static/proxy;
  fastcgi_temp_path $tmp/static/fastcgi;
  uwsgi_temp_path $tmp/static/uwsgi;
  scgi_temp_path $tmp/static/scgi;
  types { }
  server {
    listen 127.0.0.1:$static_port;
    location = /api/v1/users {
      default_type application/json;
      alias $page;
    }
  }
}
EOF
nice -n "$NICE" "$NGINX" -p "$tmp/static" -c "$tmp/static/nginx.conf" -e "$tmp/static/error.log" -g 'daemon off;' &
static_pid=$!
pids+=("$static_pid")
direct_url="http://127.0.0.1:${static_port}/api/v1/users?limit=$USERS"
wait_http "$direct_url"

# ---------------------------------------------------------------------------------------------
# The nginx hop: proxy_pass with upstream keep-alive (unigate also keeps its provider
# connections alive) and buffers that hold the whole page in memory (no temp file).
proxy_port="$(free_port)"
cat >"$tmp/proxy/nginx.conf" <<EOF
worker_processes $WORKERS;
pid $tmp/proxy/nginx.pid;
error_log $tmp/proxy/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  client_body_temp_path $tmp/proxy/body;
  proxy_temp_path $tmp/proxy/proxy;
  fastcgi_temp_path $tmp/proxy/fastcgi;
  uwsgi_temp_path $tmp/proxy/uwsgi;
  scgi_temp_path $tmp/proxy/scgi;
  proxy_buffer_size 16k;
  proxy_buffers 16 16k;
  proxy_busy_buffers_size 32k;
  upstream provider {
    server 127.0.0.1:$static_port;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$proxy_port;
    location / {
      proxy_pass http://provider;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nice -n "$NICE" "$NGINX" -p "$tmp/proxy" -c "$tmp/proxy/nginx.conf" -e "$tmp/proxy/error.log" -g 'daemon off;' &
proxy_pid=$!
pids+=("$proxy_pid")
proxy_url="http://127.0.0.1:${proxy_port}/api/v1/users?limit=$USERS"
wait_http "$proxy_url"

# ---------------------------------------------------------------------------------------------
# 3. unigate over the static provider.
cat >"$tmp/unigate.yaml" <<EOF
api_tokens: ["$TOKEN"]
cursor_secret: "bench-cursor-secret-0123456789"
mappings_dir: "$repo/mappings"
store: { kind: memory }
integrated_accounts:
  - id: bench
    integration: okta
    context: { subdomain: acme, api_token: x }
    base_url: "http://127.0.0.1:${static_port}/api/v1"
    # okta.yaml's plain list has a second pass (DEPROVISIONED users, through Okta's search); the
    # benchmark measures one provider call a request, as the hop makes, so this account's list is
    # the first pass alone (the mapping, its fast path and pruning are the file's).
    mapping:
      resources:
        users:
          list: { method: GET, path: /users, records: "\$" }
EOF
under=()
start_polls=200
if [ "${CALLGRIND:-0}" = 1 ]; then
  command -v valgrind >/dev/null || { say "CALLGRIND=1 needs valgrind"; exit 1; }
  # Counting starts zeroed, after the warm-up (callgrind_control -z below).
  under=(valgrind --tool=callgrind -q --callgrind-out-file="$tmp/callgrind.out")
  start_polls=6000 # loading the mappings takes a minute or more under valgrind
fi
# The worker count through tokio's variable rather than `server.workers` (the same setting), so
# that UNIGATE_BIN builds from before that setting existed run with the same count.
TOKIO_WORKER_THREADS="$WORKERS" UNIGATE_LOG="${UNIGATE_LOG:-warn}" nice -n "$NICE" "${under[@]}" "$binary" serve --config "$tmp/unigate.yaml" --listen 127.0.0.1:0 \
  >"$tmp/unigate.out" 2>"$tmp/unigate.err" &
unigate_pid=$!
pids+=("$unigate_pid")
for _ in $(seq "$start_polls"); do grep -q "listening" "$tmp/unigate.out" && break; sleep 0.05; done
unigate_port="$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/unigate.out" | head -1)"
[ -n "$unigate_port" ] || { say "unigate did not start:"; cat "$tmp/unigate.err" >&2; exit 1; }
unigate_url="http://127.0.0.1:${unigate_port}/unified/user-directory/users?integrated_account_id=bench&limit=$USERS"
auth=(-H "Authorization: Bearer $TOKEN")
wait_http "$unigate_url" "${auth[@]}"

# One look at each answer: status, size, and that unigate mapped all 100 users on one page.
probe() { curl -s -o "$tmp/probe" -w '%{http_code} %{size_download} %{content_type}\n' "$@"; }
read -r direct_status direct_bytes direct_type < <(probe "$direct_url")
read -r proxy_status proxy_bytes _ < <(probe "$proxy_url")
read -r unigate_status unigate_bytes _ < <(probe "${auth[@]}" "$unigate_url")
count="$(python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); print(d["result_count"], d["next_cursor"])' "$tmp/probe")"
if [ "$direct_status $proxy_status $unigate_status" != "200 200 200" ] || [ "$count" != "$USERS None" ]; then
  say "unexpected answers: direct $direct_status, nginx hop $proxy_status, unigate $unigate_status ($count)"
  exit 1
fi
if curl -sI "$direct_url" | grep -qi '^link:'; then say "the static provider sends a Link header"; exit 1; fi

# ---------------------------------------------------------------------------------------------
# 4. Load.
# run_load URL CONNS SECONDS [header...] -> "requests req_per_s p50_ms p99_ms non2xx"
run_load() {
  local url="$1" conns="$2" secs="$3"; shift 3
  local hdr=() h
  if [ "$LOADGEN" = wrk ]; then
    for h in "$@"; do hdr+=(-H "$h"); done
    # In the background and waited for, so that a signal to this script ends the run at once.
    # wrk wants at least one connection per thread.
    nice -n "$NICE" wrk -t "$((conns < THREADS ? conns : THREADS))" -c "$conns" -d "${secs}s" --latency "${hdr[@]}" "$url" >"$tmp/wrk.out" 2>&1 &
    loadgen_pid=$!
    wait "$loadgen_pid"
    loadgen_pid=""
    python3 - "$tmp/wrk.out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s|m)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]
p50 = ms(re.search(r"^\s*50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s*99%\s+(\S+)", text, re.M).group(1))
requests = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
bad = (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)
print(requests, rps, f"{p50:.3f}", f"{p99:.3f}", bad)
PY
  else
    for h in "$@"; do hdr+=(-H "$h"); done
    # Newer oha spell JSON output `--output-format json`, older ones `-j`.
    nice -n "$NICE" oha --no-tui --output-format json -z "${secs}s" -c "$conns" "${hdr[@]}" "$url" >"$tmp/oha.out" 2>/dev/null &
    loadgen_pid=$!
    if ! wait "$loadgen_pid"; then
      nice -n "$NICE" oha --no-tui -j -z "${secs}s" -c "$conns" "${hdr[@]}" "$url" >"$tmp/oha.out" &
      loadgen_pid=$!
      wait "$loadgen_pid"
    fi
    loadgen_pid=""
    python3 - "$tmp/oha.out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
codes = d.get("statusCodeDistribution", {})
requests = sum(codes.values())
bad = requests - sum(v for k, v in codes.items() if k.startswith("2"))
bad += sum(d.get("errorDistribution", {}).values())
p = d["latencyPercentiles"]
print(requests, d["summary"]["requestsPerSec"], f"{p['p50'] * 1000:.3f}", f"{p['p99'] * 1000:.3f}", bad)
PY
  fi
}

declare -A RPS P50 P99 CPU
measure() { # key url conns pids-in-path... -- [header...]
  local key="$1" url="$2" conns="$3"; shift 3
  local path_pids=() before after requests rps p50 p99 bad
  while [ "$1" != "--" ]; do path_pids+=("$1"); shift; done
  shift
  run_load "$url" "$conns" "$WARMUP" "$@" >/dev/null
  before="$(cpu_ticks "${path_pids[@]}")"
  run_load "$url" "$conns" "$DURATION" "$@" >"$tmp/result"
  read -r requests rps p50 p99 bad <"$tmp/result"
  after="$(cpu_ticks "${path_pids[@]}")"
  if [ "$bad" != 0 ]; then say "$key: $bad failed or non-2xx answers"; exit 1; fi
  RPS[$key]="$rps"; P50[$key]="$p50"; P99[$key]="$p99"
  CPU[$key]="$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')"
  say "$key: $rps req/s, p50 $p50 ms, p99 $p99 ms"
}

if [ "${CALLGRIND:-0}" = 1 ]; then
  # Instructions unigate executes per request, counted by callgrind over REQUESTS sequential
  # requests on one keep-alive connection after a warm-up: a figure that the machine's speed,
  # its other load and its clock do not move, for comparing two builds (UNIGATE_BIN) on a
  # machine too noisy for timings.
  requests="${REQUESTS:-100}"
  load_sequentially() { # count
    python3 - "$unigate_port" "$TOKEN" "$1" "$USERS" <<'PY'
import http.client, sys
port, token, count, users = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
for _ in range(count):
    connection.request("GET", f"/unified/user-directory/users?integrated_account_id=bench&limit={users}",
                       headers={"Authorization": "Bearer " + token})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"unigate answered {response.status}")
PY
  }
  say "counting unigate's instructions over $requests requests (callgrind)"
  load_sequentially 10
  callgrind_control -z "$unigate_pid" >/dev/null 2>&1
  load_sequentially "$requests"
  callgrind_control -d "$unigate_pid" >/dev/null 2>&1
  dump="$(ls -t "$tmp"/callgrind.out* | head -1)"
  total="$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$dump" | head -1)"
  [ -n "$total" ] || total="$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$dump" | head -1)"
  echo "unigate: $(awk -v t="$total" -v n="$requests" 'BEGIN { printf "%.0f", t / n }') instructions per request ($requests requests, $binary)"
  [ -n "${CALLGRIND_OUT:-}" ] && cp "$dump" "$CALLGRIND_OUT"
  exit 0
fi

if [ -n "${COMPARE_BIN:-}" ]; then
  # start_build BINARY NAME: a fresh unigate of that build on the same provider and configuration;
  # sets build_pid and build_url.
  start_build() {
    TOKIO_WORKER_THREADS="$WORKERS" UNIGATE_LOG="${UNIGATE_LOG:-warn}" nice -n "$NICE" "$1" serve --config "$tmp/unigate.yaml" --listen 127.0.0.1:0 \
      >"$tmp/$2.out" 2>"$tmp/$2.err" &
    build_pid=$!
    pids+=("$build_pid")
    for _ in $(seq 200); do grep -q "listening" "$tmp/$2.out" && break; sleep 0.05; done
    local port
    port="$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/$2.out" | head -1)"
    [ -n "$port" ] || { say "$1 did not start:"; cat "$tmp/$2.err" >&2; exit 1; }
    build_url="${unigate_url/:${unigate_port}\//:${port}/}"
    wait_http "$build_url" "${auth[@]}"
  }
  stop_build() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
  start_build "$COMPARE_BIN" other
  read -r other_status other_bytes _ < <(probe "${auth[@]}" "$build_url")
  stop_build "$build_pid"
  stop_build "$unigate_pid"
  if [ "$other_status" != 200 ] || [ "$other_bytes" != "$unigate_bytes" ]; then
    say "the two builds answer differently: $unigate_status ($unigate_bytes bytes) and $other_status ($other_bytes bytes)"
    exit 1
  fi
  say "comparing $binary (first) with $COMPARE_BIN (other): $ROUNDS rounds of ${DURATION}s each, $CONNS connections, $USERS users a page"
  printf '%-6s %12s %12s %10s %12s %12s %10s\n' round "first req/s" "other req/s" "rate" "first CPU" "other CPU" "CPU"
  ratios=()
  for round in $(seq "$ROUNDS"); do
    # Fresh processes each round: two processes of one build differ by a few percent that stay
    # with the process (where its code and heap happen to lie), so only new ones average it out.
    # Which build goes first alternates, so a drift of the machine weighs on both.
    start_build "$binary" first
    first_pid="$build_pid" first_url="$build_url"
    start_build "$COMPARE_BIN" other
    other_pid="$build_pid" other_url="$build_url"
    if [ $((round % 2)) = 1 ]; then order=(first other); else order=(other first); fi
    for which in "${order[@]}"; do
      if [ "$which" = first ]; then url="$first_url" pid="$first_pid"; else url="$other_url" pid="$other_pid"; fi
      measure "$which/$round" "$url" "$CONNS" "$pid" -- "Authorization: Bearer $TOKEN"
    done
    stop_build "$first_pid"
    stop_build "$other_pid"
    rate="$(echo "${RPS[other/$round]} / ${RPS[first/$round]}" | bc -l)"
    cpu="$(echo "${CPU[other/$round]} / ${CPU[first/$round]}" | bc -l)"
    ratios+=("$rate $cpu")
    printf '%-6s %12.0f %12.0f %9.3fx %9s us %9s us %9.3fx\n' "$round" "${RPS[first/$round]}" "${RPS[other/$round]}" \
      "$rate" "${CPU[first/$round]}" "${CPU[other/$round]}" "$cpu"
  done
  printf '%s\n' "${ratios[@]}" | python3 -c '
import statistics, sys
rows = [tuple(map(float, line.split())) for line in sys.stdin if line.strip()]
for index, what in ((0, "req/s"), (1, "CPU a request")):
    values = [row[index] for row in rows]
    print(f"other / first, {what}: median {statistics.median(values):.3f}x (lowest {min(values):.3f}x, highest {max(values):.3f}x, {len(values)} rounds)")
'
  exit 0
fi

if [ "${PROFILE:-0}" = 1 ]; then
  # Where unigate's CPU goes under the throughput load, instead of the measurements.
  command -v perf >/dev/null || { say "PROFILE=1 needs perf"; exit 1; }
  say "profiling unigate for ${DURATION}s under $CONNS connections"
  perf_graph=()
  [ "${CALLGRAPH:-0}" = 1 ] && perf_graph=(--call-graph dwarf,16384 -F 1000)
  perf record -q "${perf_graph[@]}" -o "$tmp/perf.data" -p "$unigate_pid" -- sleep "$DURATION" >/dev/null 2>&1 &
  perf_pid=$!
  run_load "$unigate_url" "$CONNS" "$DURATION" "Authorization: Bearer $TOKEN" >/dev/null
  wait "$perf_pid" || true
  [ -n "${PERF_DATA:-}" ] && cp "$tmp/perf.data" "$PERF_DATA"
  perf report -q -i "$tmp/perf.data" -g none --no-children --sort dso,symbol --percent-limit ${PERCENT_LIMIT:-0.7} 2>/dev/null |
    awk '{ printf "%8s  %-18s %s\n", $1, $2, $4 }' | head -"${TOP:-40}"
  # The same samples in a few buckets (by symbol name; the first pattern that matches wins).
  echo
  echo "split of unigate's CPU (all samples):"
  perf report -q -i "$tmp/perf.data" -g none --no-children --sort dso,symbol 2>/dev/null | awk '
    {
      pct = $1; sub("%", "", pct); dso = $2; sym = ""
      for (i = 4; i <= NF; i++) sym = sym " " $i
      if (dso ~ /kernel/) bucket = "kernel (network, scheduling)"
      else if (sym ~ /fast::eval|fast::builtins|Evaluator|fast::Val|eval::Val/) bucket = "mapping fast path (evaluator)"
      else if (sym ~ /jlens/) bucket = "JSONata engine"
      else if (sym ~ /reads::|doc::|scan::|serde_json::de|serde_json::read|serde_json::value::de|RawValue|indexmap|hash|sip::|Hasher|IgnoredAny|raw_records|record::skip_|record_texts|next_quote_or_backslash/) bucket = "parsing the provider body"
      else if (sym ~ /serde_json::ser|format_escaped|write_|append_remote|itoa|ryu/) bucket = "writing the answer"
      else if (sym ~ /mi_|malloc|free|alloc::|drop_in_place/) bucket = "allocation and frees"
      else if (sym ~ /hyper|h2::|reqwest|axum|tower|http::|rustls|tokio|mio|bytes::/) bucket = "HTTP server and client, runtime"
      else if (sym ~ /memmove|memcpy|memcmp|memchr|memset/) bucket = "memcpy/memcmp (callers mixed)"
      else bucket = "other"
      sum[bucket] += pct
    }
    END { for (b in sum) printf "%7.1f%%  %s\n", sum[b], b }' | sort -rn
  if [ "${CALLGRAPH:-0}" = 1 ]; then
    # Who allocates: the callers (inlined frames included) of the allocator's entry points.
    echo
    echo "callers of the allocator (CALLGRAPH=1):"
    perf report -q -i "$tmp/perf.data" --no-children --stdio -G --percent-limit 0.3 \
      -S _mi_page_malloc,_mi_malloc_generic,mi_heap_malloc_aligned_at,mi_malloc_aligned 2>/dev/null |
      grep -v '^$' | head -"${TOP_CALLERS:-120}"
  fi
  exit 0
fi

load_before="$(cut -d' ' -f1 /proc/loadavg)"
say "load: $LOADGEN, $THREADS threads, ${WARMUP}s warm-up + ${DURATION}s per case"
for conns in "$CONNS" "$LOW_CONNS"; do
  measure "direct/$conns" "$direct_url" "$conns" "$static_pid" --
  measure "nginx/$conns" "$proxy_url" "$conns" "$proxy_pid" "$static_pid" --
  measure "unigate/$conns" "$unigate_url" "$conns" "$unigate_pid" "$static_pid" -- "Authorization: Bearer $TOKEN"
done

# The ratio again, from alternating pairs of short runs: on a machine whose speed drifts (a VM
# whose neighbours come and go: one seen here ran one unigate process at 1,770 and at 3,100 req/s
# within one run), the hop measured at one moment and unigate at another can differ by the
# drift as much as by the code. Each pair runs both back to back, the first of the two
# alternating, and the median of the pairs' ratios is what the drift moves least.
ratio_pairs=()
if [ "$RATIO_ROUNDS" -gt 0 ]; then
  say "interleaved: $RATIO_ROUNDS pairs of ${RATIO_SECONDS}s runs (nginx hop, unigate) at $CONNS connections"
  for round in $(seq "$RATIO_ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order=(nginx unigate); else order=(unigate nginx); fi
    for which in "${order[@]}"; do
      if [ "$which" = nginx ]; then
        DURATION="$RATIO_SECONDS" WARMUP=1 measure "pair-nginx/$round" "$proxy_url" "$CONNS" "$proxy_pid" "$static_pid" --
      else
        DURATION="$RATIO_SECONDS" WARMUP=1 measure "pair-unigate/$round" "$unigate_url" "$CONNS" "$unigate_pid" "$static_pid" -- "Authorization: Bearer $TOKEN"
      fi
    done
    ratio_pairs+=("${RPS[pair-unigate/$round]} ${RPS[pair-nginx/$round]} ${CPU[pair-unigate/$round]}")
  done
fi

load_after="$(cut -d' ' -f1 /proc/loadavg)"

# ---------------------------------------------------------------------------------------------
# 5. Startup: compiling every mapping.
startup=()
for _ in 1 2 3 4 5; do
  start=$(date +%s%N)
  "$binary" check "$repo/mappings" >"$tmp/check.out"
  end=$(date +%s%N)
  startup+=("$(( (end - start) / 1000 ))")
done
check_summary="$(head -1 "$tmp/check.out")"
startup_ms="$(printf '%s\n' "${startup[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f ms (median of 5; min %.1f, max %.1f)", v[3] / 1000, v[1] / 1000, v[5] / 1000 }')"

# ---------------------------------------------------------------------------------------------
# The table.
if [ "$LOADGEN" = wrk ]; then loadgen_version="$( (wrk -v 2>&1 || true) | head -1 | awk '{print $1, $2}')"
else loadgen_version="$( (oha --version 2>&1 || true) | head -1)"; fi
echo
printf 'provider page: %s user(s), %s bytes (%s); nginx hop answer %s bytes; unigate answer %s bytes\n' \
  "$USERS" "$direct_bytes" "$direct_type" "$proxy_bytes" "$unigate_bytes"
printf '%-24s %6s %10s %9s %9s %13s %15s\n' "case" "conns" "req/s" "p50 ms" "p99 ms" "vs nginx hop" "server CPU/req"
for conns in "$CONNS" "$LOW_CONNS"; do
  for case in direct nginx unigate; do
    key="$case/$conns"
    label="$case"
    [ "$case" = direct ] && label="direct (static nginx)"
    [ "$case" = nginx ] && label="nginx proxy_pass hop"
    [ "$case" = unigate ] && label="unigate unified list"
    printf '%-24s %6s %10.0f %9.2f %9.2f %12.2fx %12s us\n' "$label" "$conns" "${RPS[$key]}" \
      "${P50[$key]}" "${P99[$key]}" "$(echo "${RPS[$key]} / ${RPS[nginx/$conns]}" | bc -l)" "${CPU[$key]}"
  done
done
if [ "${#ratio_pairs[@]}" -gt 0 ]; then
  printf '%s\n' "${ratio_pairs[@]}" | python3 -c '
import statistics, sys
pairs = [tuple(map(float, line.split())) for line in sys.stdin if line.strip()]
ratios = sorted(u / n for u, n, _ in pairs)
cpu = sorted(c for _, _, c in pairs)
print(f"interleaved, {sys.argv[1]} conns: unigate / nginx hop median {statistics.median(ratios):.2f}x "
      f"(lowest {ratios[0]:.2f}x, highest {ratios[-1]:.2f}x; {len(pairs)} pairs of {sys.argv[2]}s runs; "
      f"unigate {min(p[0] for p in pairs):.0f}-{max(p[0] for p in pairs):.0f} req/s, "
      f"hop {min(p[1] for p in pairs):.0f}-{max(p[1] for p in pairs):.0f}); "
      f"server CPU/req on the unigate path (provider included) median {statistics.median(cpu):.0f} us ({cpu[0]:.0f}-{cpu[-1]:.0f})")
' "$CONNS" "$RATIO_SECONDS"
fi
echo
awk -v u50="${P50[unigate/$LOW_CONNS]}" -v d50="${P50[direct/$LOW_CONNS]}" \
  -v u99="${P99[unigate/$LOW_CONNS]}" -v d99="${P99[direct/$LOW_CONNS]}" \
  -v n99="${P99[nginx/$LOW_CONNS]}" -v c="$LOW_CONNS" 'BEGIN {
    printf "added latency of unigate vs direct at low load (%s conns): p99 %+.2f ms, p50 %+.2f ms (nginx hop: p99 %+.2f ms)\n", c, u99 - d99, u50 - d50, n99 - d99 }'
echo "startup: unigate check mappings: $startup_ms; $check_summary"
echo "1-min load average before the runs: $load_before, after: $load_after$(awk -v l="$load_before" 'BEGIN { if (l > 1.0) print " (other work was running: the numbers are noisy; compare CPU/req)" }')"
echo "machine: $(nproc) cores, nice $NICE, $WORKERS worker(s) for the nginx hop and unigate, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); load generator $loadgen_version; $("$NGINX" -v 2>&1 | sed 's/.*: //'); $(date -u '+%Y-%m-%d %H:%M UTC')"
