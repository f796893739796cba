#!/usr/bin/env bash
# Measures the mesh data path against a direct baseline in the same run, on loopback:
#
#   baseline:  oha ──────────────────────────────────────────────► demo-app
#   mesh:      oha ──► client sidecar :15001 ──► server sidecar :15006 ──► demo-app
#
# For each: max throughput (16 connections, as fast as possible) and latency at a fixed
# 1000 req/s over 16 connections with a 1 KiB POST body; plus the sidecars' RSS.
# Writes bench/RESULTS.md. Usage: bench/run.sh [seconds per run, default 10]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
tools=${XDG_CACHE_HOME:-$HOME/.cache}/weft/tools
oha=$tools/bin/oha
if [ ! -x "$oha" ]; then
  echo "installing oha (load generator) into $tools"
  cargo install oha@1.16.0 --locked --root "$tools"
fi
command -v jq >/dev/null || { echo "bench needs jq: apt-get install -y jq" >&2; exit 1; }

cargo build --release --manifest-path "$root/Cargo.toml" -p weft-controller -p weft-proxy -p weftctl
bin=$root/target/release

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

net=127.0.20
mkdir -p "$work/config"
cat > "$work/config/echo.yaml" <<EOF
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo, namespace: default}
spec:
  address: $net.11
  ports: {http: 15006}
  labels: {app: echo}
EOF

"$bin/weft-controller" --config-dir "$work/config" --xds-address $net.1:15010 \
  --debug-address $net.1:15014 > "$work/controller.log" 2>&1 & pids+=($!)
"$bin/weftctl" demo-app --listen $net.11:9080 --service echo --version v1 > "$work/app.log" 2>&1 & pids+=($!)
RUST_LOG=warn "$bin/weft-proxy" --xds-address http://$net.1:15010 --instance-ip $net.11 --app-port 9080 \
  --workload-name echo --labels app=echo > "$work/server-sidecar.log" 2>&1 & server_pid=$!; pids+=($server_pid)
RUST_LOG=warn "$bin/weft-proxy" --xds-address http://$net.1:15010 --instance-ip $net.10 \
  --workload-name client --labels app=client > "$work/client-sidecar.log" 2>&1 & client_pid=$!; pids+=($client_pid)

for url in http://$net.1:15014/ready http://$net.11:15000/ready http://$net.10:15000/ready http://$net.11:9080/; do
  for _ in $(seq 1 200); do curl -fsS -o /dev/null "$url" 2>/dev/null && break; sleep 0.05; done
  curl -fsS -o /dev/null "$url" || { echo "not ready: $url" >&2; tail -20 "$work"/*.log >&2; exit 1; }
done
curl -fsS -H 'Host: echo:9080' -o /dev/null http://$net.10:15001/ || { echo "mesh path not working" >&2; exit 1; }

head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$work/body"

# run NAME URL [oha args...] → $work/NAME.json
run() {
  local name=$1 url=$2; shift 2
  "$oha" --no-tui --output-format json -z "${secs}s" -c 16 "$@" -H 'Host: echo:9080' "$url" > "$work/$name.json"
}
direct=http://$net.11:9080/
mesh=http://$net.10:15001/
echo "max throughput: direct"; run direct-max "$direct"
echo "max throughput: mesh";   run mesh-max "$mesh"
echo "1000 req/s, 1 KiB body: direct"; run direct-fixed "$direct" -q 1000 --latency-correction -m POST -D "$work/body"
echo "1000 req/s, 1 KiB body: mesh";   run mesh-fixed "$mesh" -q 1000 --latency-correction -m POST -D "$work/body"

rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

j() { jq -r "$2" "$work/$1.json"; }
rps() { j "$1" '.summary.requestsPerSec'; }
pct() { j "$1" ".latencyPercentiles.$2 * 1000"; }
ok() { j "$1" '.summary.successRate * 100'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
fmt() { awk -v a="$1" 'BEGIN { printf "%.3f", a }'; }

{
  echo "# Benchmark results"
  echo
  echo "Produced by \`bench/run.sh $secs\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(uname -r)), release build."
  echo "Load: oha $("$oha" --version | awk '{print $2}'), 16 connections, HTTP/1.1 keep-alive, loopback."
  echo "Baseline: oha → demo-app directly. Mesh: oha → client sidecar → server sidecar → demo-app."
  echo "Ratios are mesh ÷ baseline from this same run (the machines are noisy; compare ratios, not absolutes)."
  echo
  echo "## Max throughput (${secs}s, GET, as fast as possible)"
  echo
  echo "| | baseline | mesh | mesh/baseline |"
  echo "| --- | ---: | ---: | ---: |"
  echo "| requests/s | $(fmt "$(rps direct-max)") | $(fmt "$(rps mesh-max)") | $(ratio "$(rps mesh-max)" "$(rps direct-max)") |"
  echo "| success % | $(ok direct-max) | $(ok mesh-max) | |"
  echo
  echo "## Latency at 1000 req/s (${secs}s, POST with a 1 KiB body, latency-corrected), ms"
  echo
  echo "| | baseline | mesh | mesh/baseline | added by two sidecars |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for p in p50 p90 p99; do
    b=$(pct direct-fixed $p); m=$(pct mesh-fixed $p)
    echo "| $p | $(fmt "$b") | $(fmt "$m") | $(ratio "$m" "$b") | $(fmt "$(awk -v a="$m" -v b="$b" 'BEGIN{print a-b}')") |"
  done
  echo "| achieved req/s | $(fmt "$(rps direct-fixed)") | $(fmt "$(rps mesh-fixed)") | | |"
  echo
  echo "## Sidecar memory after the runs (KiB)"
  echo
  echo "| | RSS | peak RSS (VmHWM) |"
  echo "| --- | ---: | ---: |"
  echo "| client sidecar | $(rss $client_pid) | $(hwm $client_pid) |"
  echo "| server sidecar | $(rss $server_pid) | $(hwm $server_pid) |"
  echo
  echo "## Reading these numbers"
  echo
  echo "- Everything shares the machine's $(nproc) cores: oha, the app and, in the mesh case, two proxies."
  echo "  The max-throughput ratio therefore measures CPU per request across three processes against"
  echo "  one, not a limit of the proxy; the fixed-rate latencies are the figures to watch."
  echo "- The baseline is weftctl's demo-app (hyper); the proxies forward to it over pooled keep-alive"
  echo "  connections (client sidecar → server sidecar over HTTP/1.1, plaintext: mTLS comes later)."
} > "$work/RESULTS.md"

cp "$work/RESULTS.md" "$root/bench/RESULTS.md"
cat "$root/bench/RESULTS.md"
