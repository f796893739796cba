#!/usr/bin/env bash
# Measures Weft's two-sidecar data path against a direct baseline and against two-hop chains
# of HAProxy and nginx, in the same run, on loopback, in plaintext and with mutual TLS between
# the two hops:
#
#   direct:        oha ──────────────────────────────────────────────────► demo-app
#   weft:          oha ──► client sidecar :15001 ──► server sidecar :15006 ──► demo-app
#   haproxy:       oha ──► haproxy A ──────────────► haproxy B ──────────────► demo-app
#   nginx:         oha ──► nginx A ────────────────► nginx B ────────────────► demo-app
#   weft-mtls:     oha ──► client sidecar :15001 ══► server sidecar :15006 ──► demo-app 2
#   haproxy-mtls:  oha ──► haproxy A ══════════════► haproxy B ══════════════► demo-app 2
#   nginx-mtls:    oha ──► nginx A ════════════════► nginx B ════════════════► demo-app 2
#
# ══ is mutual TLS 1.3 with ECDSA P-256 certificates: for Weft, workload certificates from a
# second weft-controller's CA (ALPN istio-peer-exchange/istio, PeerAuthentication STRICT);
# for HAProxy and nginx, a CA, a server and a client certificate made here with openssl,
# verified both ways. oha → first hop and last hop → app are plaintext on every path. The
# mTLS chains share a second demo-app at the mTLS server sidecar's address (its inbound
# cluster sends to <instance ip>:9080), so the three of them have the same upstream.
#
# Every proxy runs on one worker thread (weft-proxy --concurrency 1, or TOKIO_WORKER_THREADS=1
# where that flag does not exist yet; haproxy nbthread 1; nginx worker_processes 1 with no
# master) and keeps its upstream connections alive (and, with TLS, reuses them). Per path and round:
#   - max throughput: 16 connections, GET, as fast as possible, for SECS seconds; the chain's
#     proxy CPU time (utime+stime from /proc/PID/stat) over that run ÷ the requests it completed;
#   - latency at a fixed 1000 req/s over 16 connections, POST with a 1 KiB body;
# and, after all rounds, each proxy's RSS. Rounds alternate the order of the paths.
# Before measuring, each mTLS server hop must refuse plaintext and a TLS client without a
# certificate, and speak TLS 1.3 with a P-256 certificate; else the run fails.
#
# Writes bench/last-run/*.tsv (the raw numbers) and bench/RESULTS.md (bench/report.sh).
# Usage: bench/run.sh [seconds per run, default 10]
#   env: ROUNDS (default 2), WARMUP (seconds before each max run, default 1),
#        CARGO_TARGET_DIR (where the release binaries are built and taken from; default
#        target/ in the workspace), NO_BUILD=1 (measure the binaries already built there),
#        NICE (priority of everything measured, default -10; 0 leaves it alone)
# Installs what it lacks: oha (cargo, into ~/.cache/weft/tools), haproxy and nginx (apt-get).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
rounds=${ROUNDS:-2}
warmup=${WARMUP:-1}
for v in "$secs" "$rounds" "$warmup"; do
  [[ $v =~ ^[0-9]+$ ]] || { echo "usage: bench/run.sh [seconds per run]; ROUNDS and WARMUP are whole numbers" >&2; exit 2; }
done
((secs > 0 && rounds > 0)) || { echo "seconds per run and ROUNDS must be > 0" >&2; exit 2; }

die() { echo "bench: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------- tools
tools=${XDG_CACHE_HOME:-$HOME/.cache}/weft/tools
oha=$tools/bin/oha
if [ ! -x "$oha" ]; then
  echo "installing oha (load generator) into $tools"
  cargo install oha@1.16.0 --locked --root "$tools"
fi
command -v jq >/dev/null || die "needs jq: apt-get install -y jq"
command -v curl >/dev/null || die "needs curl: apt-get install -y curl"
export PATH=$PATH:/usr/sbin:/sbin
if ! command -v haproxy >/dev/null || ! command -v nginx >/dev/null; then
  echo "installing haproxy and nginx (Debian packages)"
  [ "$(id -u)" = 0 ] || die "haproxy/nginx missing and not root: apt-get install -y haproxy nginx"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy nginx
fi
# The packages' own services are never used: every process below is ours, with our config,
# in the foreground, on 127.0.20.x addresses only.

command -v openssl >/dev/null || die "needs openssl: apt-get install -y openssl"

# Cargo resolves a relative CARGO_TARGET_DIR against its working directory: make it absolute.
target_dir=${CARGO_TARGET_DIR:-$root/target}
[[ $target_dir == /* ]] || target_dir=$PWD/$target_dir
export CARGO_TARGET_DIR=$target_dir
if [ "${NO_BUILD:-}" != 1 ]; then
  cargo build --release --manifest-path "$root/Cargo.toml" -p weft-controller -p weft-proxy -p weftctl
fi
bin=$target_dir/release
for b in weft-controller weft-proxy weftctl; do
  [ -x "$bin/$b" ] || die "$bin/$b is missing: CARGO_TARGET_DIR=$target_dir cargo build --release"
done

# The machine is shared (builds, other tests): run this shell and so everything it starts
# (app, proxies, oha) at a higher priority, the same for every path, so that other work
# disturbs the numbers less. NICE=0 to leave priorities alone.
nice_level=${NICE:--10}
[[ $nice_level =~ ^-?[0-9]+$ ]] || die "NICE must be a whole number"
if [ "$nice_level" != 0 ]; then
  renice -n "$nice_level" -p $$ > /dev/null || { echo "bench: cannot renice to $nice_level; running at nice 0" >&2; nice_level=0; }
fi

# --------------------------------------------------------------------- processes, cleanup
work=$(mktemp -d "${TMPDIR:-/tmp}/weft-bench.XXXXXX")
declare -A pid=()
cleanup() {
  trap - EXIT INT TERM
  local p
  # oha_pid is set below, while a load run is in progress.
  [ -n "${oha_pid:-}" ] && kill -TERM "$oha_pid" 2>/dev/null
  for p in "${pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  # Give them a moment, then make sure: only our own pids, never by name.
  for _ in $(seq 1 40); do
    local left=0
    for p in "${pid[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
    ((left)) || break
    sleep 0.05
  done
  for p in "${pid[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

# start NAME CMD... : run CMD in the background (exec'd, so $! is the server's own pid).
start() {
  local name=$1; shift
  "$@" > "$work/$name.log" 2>&1 &
  pid[$name]=$!
}
alive() {
  local n
  for n in "${!pid[@]}"; do
    kill -0 "${pid[$n]}" 2>/dev/null || { echo "bench: $n (pid ${pid[$n]}) exited; its log:" >&2; tail -n 30 "$work/$n.log" >&2; return 1; }
  done
}
# wait_ready TIMEOUT URL [curl args...]: poll until URL answers 2xx, with a deadline.
wait_ready() {
  local timeout=$1 url=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; do
    alive || exit 1
    ((SECONDS < deadline)) || {
      echo "bench: not ready after ${timeout}s: $url" >&2
      for f in "$work"/*.log; do echo "== $f" >&2; tail -n 15 "$f" >&2; done
      exit 1
    }
    sleep 0.05
  done
}

net=127.0.20
app=$net.11:9080
app_mtls=$net.41:9080   # the mTLS chains' app, at the mTLS server sidecar's address

# ------------------------------------------------------------------------- Weft (+ the app)
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

if "$bin/weft-proxy" --help 2>/dev/null | grep -q -- '--concurrency'; then
  weft_threads=(--concurrency 1); weft_env=(); weft_threads_how="\`--concurrency 1\`"
else
  weft_threads=(); weft_env=(TOKIO_WORKER_THREADS=1)
  weft_threads_how="\`TOKIO_WORKER_THREADS=1\` (this weft-proxy has no \`--concurrency\` flag)"
fi
echo "weft-proxy threads: $weft_threads_how"

start controller "$bin/weft-controller" --config-dir "$work/config" --xds-address $net.1:15010 --debug-address $net.1:15014
start app "$bin/weftctl" demo-app --listen $app --service echo --version v1
start server-sidecar env WEFT_LOG=warn "${weft_env[@]}" "$bin/weft-proxy" "${weft_threads[@]}" \
  --xds-address http://$net.1:15010 --instance-ip $net.11 --app-port 9080 --workload-name echo --labels app=echo
start client-sidecar env WEFT_LOG=warn "${weft_env[@]}" "$bin/weft-proxy" "${weft_threads[@]}" \
  --xds-address http://$net.1:15010 --instance-ip $net.10 --workload-name client --labels app=client

# ------------------------------------------- Weft without Istio's metrics (their cost)
# The same plaintext chain with `--istio-metrics=false` (no istio_* recording, no peer
# metadata exchange), served by a third controller: Weft ÷ this is what the metrics cost.
mkdir -p "$work/nm-config"
sed "s/address: $net.11\$/address: $net.71/" "$work/config/echo.yaml" > "$work/nm-config/echo.yaml"
grep -q "address: $net.71" "$work/nm-config/echo.yaml" || die "the no-metrics config does not point at $net.71"
start controller-nm "$bin/weft-controller" --config-dir "$work/nm-config" --xds-address $net.3:15010 --debug-address $net.3:15014
start app-nm "$bin/weftctl" demo-app --listen $net.71:9080 --service echo --version v1
start server-sidecar-nm env WEFT_LOG=warn "${weft_env[@]}" "$bin/weft-proxy" "${weft_threads[@]}" \
  --xds-address http://$net.3:15010 --instance-ip $net.71 --app-port 9080 --workload-name echo --labels app=echo \
  --istio-metrics=false
start client-sidecar-nm env WEFT_LOG=warn "${weft_env[@]}" "$bin/weft-proxy" "${weft_threads[@]}" \
  --xds-address http://$net.3:15010 --instance-ip $net.70 --workload-name client --labels app=client \
  --istio-metrics=false

# ------------------------------------------------------------------- Weft with mutual TLS
# A second controller (its own config dir and CA) serves the same `echo:9080` service, at the
# address of the mTLS server sidecar, whose endpoint is marked as having a sidecar
# (tlsMode: istio) and runs as ServiceAccount `echo`; a mesh-wide PeerAuthentication STRICT
# makes any plaintext fallback fail. The sidecars get their certificates from that CA with
# bootstrap tokens (local mode), and are ready only once they have them.
ca_dir=$work/mtls-ca
mkdir -p "$work/mtls-config" "$work/mtls-tokens/default"
for sa in echo client; do head -c 24 /dev/urandom | base64 > "$work/mtls-tokens/default/$sa"; done
cat > "$work/mtls-config/echo.yaml" <<EOF
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
  address: $net.41
  ports: {http: 15006}
  serviceAccount: echo
  labels: {app: echo, security.istio.io/tlsMode: istio}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
EOF

start controller-mtls "$bin/weft-controller" --config-dir "$work/mtls-config" --xds-address $net.2:15010 \
  --secure-xds-address $net.2:15012 --debug-address $net.2:15014 --ca-dir "$ca_dir" --ca-token-dir "$work/mtls-tokens"
start app-mtls "$bin/weftctl" demo-app --listen $app_mtls --service echo --version v2
# The root certificate is written when the controller first starts; the sidecars need it.
deadline=$((SECONDS + 30))
until [ -s "$ca_dir/root-cert.pem" ]; do
  alive || exit 1
  ((SECONDS < deadline)) || die "weft-controller (mTLS) wrote no $ca_dir/root-cert.pem in 30s"
  sleep 0.05
done
# mtls_sidecar NAME IP SERVICE_ACCOUNT ARGS...: a sidecar of the mTLS mesh with its identity.
mtls_sidecar() {
  local name=$1 ip=$2 sa=$3; shift 3
  start "$name" env WEFT_LOG=warn "${weft_env[@]}" "$bin/weft-proxy" "${weft_threads[@]}" \
    --xds-address http://$net.2:15010 --instance-ip "$ip" \
    --ca-address https://$net.2:15012 --ca-root-cert "$ca_dir/root-cert.pem" \
    --ca-token-file "$work/mtls-tokens/default/$sa" --service-account "$sa" "$@"
}
mtls_sidecar server-sidecar-mtls $net.41 echo --app-port 9080 --workload-name echo --labels app=echo
mtls_sidecar client-sidecar-mtls $net.40 client --workload-name client --labels app=client

# --------------------------------------------------- certificates for HAProxy and nginx mTLS
# One CA, a server certificate (server.bench) and a client certificate (client.bench), all
# ECDSA P-256 / SHA-256 like Weft's, made fresh for this run.
pki=$work/pki
mkdir -p "$pki"
(
  cd "$pki"
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 2 \
    -keyout ca.key -out ca.crt -subj /CN=weft-bench-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
  for leaf in server client; do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
      -keyout $leaf.key -out $leaf.csr -subj /CN=$leaf.bench
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=DNS:%s.bench\n' \
      "$([ $leaf = server ] && echo serverAuth || echo clientAuth)" $leaf > $leaf.ext
    openssl x509 -req -in $leaf.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 2 -extfile $leaf.ext -out $leaf.crt
    cat $leaf.crt $leaf.key > $leaf.pem   # HAProxy's crt: certificate and key in one file
  done
) > "$work/pki.log" 2>&1 || { cat "$work/pki.log" >&2; die "openssl could not make the certificates"; }
openssl verify -CAfile "$pki/ca.crt" "$pki/server.crt" "$pki/client.crt" > /dev/null || die "the bench certificates do not verify"

# ------------------------------------------------------------------------------- HAProxy
# haproxy_cfg LISTEN UPSTREAM SOURCE [BIND_OPTS] [SERVER_OPTS]: one hop, forwarding everything
# to UPSTREAM from the address SOURCE (so that its connections are told apart from the other
# chains'); BIND_OPTS / SERVER_OPTS add TLS to the listening / upstream side.
haproxy_cfg() {
  cat <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend fe
    bind $1${4:+ $4}
    default_backend be
backend be
    source $3
    server up $2${5:+ $5}
EOF
}
# mTLS between A and B: TLS 1.3 only, each side presents its certificate and requires the
# other's, from the bench CA (B checks the client certificate; A checks the server's chain
# and its name). HAProxy caches the TLS session of the server by default; `http-reuse always`
# keeps the TLS connections in use across requests.
tls13="ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.3"
haproxy_cfg $net.20:18080 $net.21:18080 $net.20 > "$work/haproxy-a.cfg"
haproxy_cfg $net.21:18080 $app $net.21 > "$work/haproxy-b.cfg"
haproxy_cfg $net.50:18080 $net.51:18443 $net.50 "" \
  "ssl $tls13 crt $pki/client.pem ca-file $pki/ca.crt verify required verifyhost server.bench" > "$work/haproxy-mtls-a.cfg"
haproxy_cfg $net.51:18443 $app_mtls $net.51 \
  "ssl $tls13 crt $pki/server.pem ca-file $pki/ca.crt verify required" > "$work/haproxy-mtls-b.cfg"
for h in a b mtls-a mtls-b; do
  haproxy -c -q -f "$work/haproxy-$h.cfg" || die "haproxy-$h.cfg is invalid"
  start haproxy-$h haproxy -db -f "$work/haproxy-$h.cfg"   # -db: foreground, one process
done

# --------------------------------------------------------------------------------- nginx
# nginx_cfg DIR LISTEN UPSTREAM SOURCE [SERVER_TLS] [PROXY_TLS]: the same, for nginx, with its
# files in DIR; SERVER_TLS (directives, and "ssl" on the listen line) makes the listening side
# TLS, PROXY_TLS the upstream side (https).
nginx_cfg() {
  local listen_ssl="" scheme=http
  [ -n "${5:-}" ] && listen_ssl=" ssl"
  [ -n "${6:-}" ] && scheme=https
  cat <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    upstream up {
        server $3;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen $2$listen_ssl;
${5:-}
        location / {
            proxy_pass $scheme://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_bind $4;
${6:-}
        }
    }
}
EOF
}
nginx_server_tls="        ssl_protocols TLSv1.3;
        ssl_certificate $pki/server.crt;
        ssl_certificate_key $pki/server.key;
        ssl_client_certificate $pki/ca.crt;
        ssl_verify_client on;"
nginx_proxy_tls="            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_certificate $pki/client.crt;
            proxy_ssl_certificate_key $pki/client.key;
            proxy_ssl_trusted_certificate $pki/ca.crt;
            proxy_ssl_verify on;
            proxy_ssl_name server.bench;
            proxy_ssl_session_reuse on;"
for h in a b mtls-a mtls-b; do mkdir -p "$work/nginx-$h"; done
nginx_cfg "$work/nginx-a" $net.30:18080 $net.31:18080 $net.30 > "$work/nginx-a/nginx.conf"
nginx_cfg "$work/nginx-b" $net.31:18080 $app $net.31 > "$work/nginx-b/nginx.conf"
nginx_cfg "$work/nginx-mtls-a" $net.60:18080 $net.61:18443 $net.60 "" "$nginx_proxy_tls" > "$work/nginx-mtls-a/nginx.conf"
nginx_cfg "$work/nginx-mtls-b" $net.61:18443 $app_mtls $net.61 "$nginx_server_tls" > "$work/nginx-mtls-b/nginx.conf"
for h in a b mtls-a mtls-b; do
  d=$work/nginx-$h
  nginx -q -t -e "$d/error.log" -p "$d" -c "$d/nginx.conf" 2> "$work/nginx-$h.check" \
    || { cat "$work/nginx-$h.check" >&2; die "nginx-$h config is invalid"; }
  start nginx-$h nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf"   # the one process is the worker
done

# ------------------------------------------------------------------------------ readiness
declare -A url=(
  [direct]=http://$app/
  [weft]=http://$net.10:15001/
  [weft-nometrics]=http://$net.70:15001/
  [haproxy]=http://$net.20:18080/
  [nginx]=http://$net.30:18080/
  [weft-mtls]=http://$net.40:15001/
  [haproxy-mtls]=http://$net.50:18080/
  [nginx-mtls]=http://$net.60:18080/
)
declare -A chain=(
  [direct]=""
  [weft]="client-sidecar server-sidecar"
  [weft-nometrics]="client-sidecar-nm server-sidecar-nm"
  [haproxy]="haproxy-a haproxy-b"
  [nginx]="nginx-a nginx-b"
  [weft-mtls]="client-sidecar-mtls server-sidecar-mtls"
  [haproxy-mtls]="haproxy-mtls-a haproxy-mtls-b"
  [nginx-mtls]="nginx-mtls-a nginx-mtls-b"
)
# The app behind each path (its CPU is shown for reference) and the version it answers with.
declare -A app_of=([direct]=app [weft]=app [weft-nometrics]=app-nm [haproxy]=app [nginx]=app
                   [weft-mtls]=app-mtls [haproxy-mtls]=app-mtls [nginx-mtls]=app-mtls)
declare -A version_of=([app]=v1 [app-nm]=v1 [app-mtls]=v2)
# The second hop's listening address: the connections the first hop holds to it are counted.
declare -A hop2=([weft]=$net.11:15006 [weft-nometrics]=$net.71:15006 [haproxy]=$net.21:18080 [nginx]=$net.31:18080
                 [weft-mtls]=$net.41:15006 [haproxy-mtls]=$net.51:18443 [nginx-mtls]=$net.61:18443)
paths=(direct weft weft-nometrics haproxy nginx weft-mtls haproxy-mtls nginx-mtls)
host=(-H 'Host: echo:9080')

wait_ready 30 http://$net.1:15014/ready
wait_ready 30 http://$net.2:15014/ready
wait_ready 30 http://$net.3:15014/ready
wait_ready 30 http://$net.71:9080/
wait_ready 30 http://$net.71:15000/ready
wait_ready 30 http://$net.70:15000/ready
wait_ready 30 http://$app/
wait_ready 30 http://$app_mtls/
wait_ready 30 http://$net.11:15000/ready
wait_ready 30 http://$net.10:15000/ready
# The mTLS sidecars are ready once the CA has issued their certificates.
wait_ready 60 http://$net.41:15000/ready
wait_ready 60 http://$net.40:15000/ready

# ------------------------------------------------------------------------ mutual TLS checks
# The mTLS sidecars must hold their workload identities.
for s in "server-sidecar-mtls $net.41 echo" "client-sidecar-mtls $net.40 client"; do
  read -r name ip sa <<< "$s"
  got=$(curl -fsS --max-time 5 "http://$ip:15000/certs" | jq -r '.identity // "none"') || die "$name: GET /certs failed"
  [ "$got" = "spiffe://cluster.local/ns/default/sa/$sa" ] \
    || die "$name has identity $got, want spiffe://cluster.local/ns/default/sa/$sa: see http://$ip:15000/certs"
done
printf 'path\tserver_hop\tprotocol\tcipher\tgroup\tserver_key\tserver_name\talpn\trefusals\n' > "$work/tls.tsv"
# tls_check PATH ADDR PLAIN CAFILE WANT_SAN [ALPN]: the mTLS server hop at ADDR must answer
# plaintext HTTP with PLAIN (000: no HTTP answer at all, as Envoy's and HAProxy's TLS-only
# listeners; nginx answers 400 on its TLS port), speak TLS 1.3 with an ECDSA P-256 certificate
# that CAFILE verifies and that names WANT_SAN, and refuse a TLS client without a certificate
# (a TLS alert, no HTTP answer, or a 4xx: never the app). What openssl negotiated goes to tls.tsv.
tls_check() {
  local p=$1 addr=$2 plain=$3 ca=$4 want_san=$5 alpn=${6:-} code out cert refused status
  code=$(curl -sS -o /dev/null --max-time 3 -w '%{http_code}' "${host[@]}" "http://$addr/" 2>/dev/null) || true
  [ "${code:-000}" = "$plain" ] \
    || die "$p: plaintext HTTP to the mTLS server hop $addr got HTTP ${code:-000}, want $plain: it is not TLS-only (STRICT)"
  local args=(-connect "$addr" -tls1_3 -CAfile "$ca" -verify_return_error -showcerts)
  [ -n "$alpn" ] && args+=(-alpn "$alpn")
  out=$({ printf 'GET / HTTP/1.1\r\nHost: echo:9080\r\nConnection: close\r\n\r\n'; sleep 1; } \
          | timeout 10 openssl s_client "${args[@]}" 2>&1) || true
  echo "$out" > "$work/tls-$p.txt"
  grep -q '^New, TLSv1.3, Cipher is' <<< "$out" || die "$p: no TLS 1.3 handshake with $addr:"$'\n'"$out"
  grep -q 'Verify return code: 0 (ok)' <<< "$out" || die "$p: the certificate of $addr does not verify against $ca:"$'\n'"$out"
  status=$(grep -m1 '^HTTP/1' <<< "$out" | tr -d '\r' || true)
  [[ -z $status || $status =~ ^HTTP/1\.[01]\ 4[0-9][0-9] ]] \
    || die "$p: $addr answered a TLS client that sent no certificate with \"$status\": not mutual TLS"$'\n'"$out"
  ! grep -q '^echo ' <<< "$out" || die "$p: a TLS client without a certificate reached the app through $addr"
  cert=$(awk '/-----BEGIN CERTIFICATE-----/ {on = 1} on {print} /-----END CERTIFICATE-----/ {exit}' <<< "$out" | openssl x509 -noout -text)
  grep -q 'ASN1 OID: prime256v1' <<< "$cert" || die "$p: the certificate of $addr is not ECDSA P-256:"$'\n'"$cert"
  grep -q "$want_san" <<< "$cert" || die "$p: the certificate of $addr does not name $want_san:"$'\n'"$cert"
  if [ -n "$status" ]; then
    refused="$status $(sed -n 's:.*<title>[0-9]* \(.*\)</title>.*:\1:p' <<< "$out" | head -n1)"
  else
    refused=$(grep -o -m1 'alert [a-z][a-z ]*[a-z]' <<< "$out" | head -n1 || true)
    [ -n "$refused" ] || refused="closed without an HTTP answer"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$addr" \
    "$(sed -n 's/^New, \(TLSv1.3\), Cipher is .*/\1/p' <<< "$out")" \
    "$(sed -n 's/^New, TLSv1.3, Cipher is \(.*\)/\1/p' <<< "$out")" \
    "$(sed -n 's/^Server Temp Key: //p; s/^Negotiated TLS1.3 group: //p' <<< "$out" | head -n1)" \
    "ECDSA P-256" \
    "${want_san#*:}" \
    "$(sed -n 's/^ALPN protocol: //p' <<< "$out" | head -n1)" \
    "$refused / $([ "$plain" = 000 ] && echo "no HTTP answer" || echo "HTTP $plain")" >> "$work/tls.tsv"
}
tls_check weft-mtls $net.41:15006 000 "$ca_dir/root-cert.pem" URI:spiffe://cluster.local/ns/default/sa/echo istio-peer-exchange,istio
tls_check haproxy-mtls $net.51:18443 000 "$pki/ca.crt" DNS:server.bench
tls_check nginx-mtls $net.61:18443 400 "$pki/ca.crt" DNS:server.bench
echo "mTLS server hops: TLS 1.3 only, P-256 certificates, plaintext and certificate-less clients refused"

# Listeners and routes arrive by xDS after /ready; poll every chain end to end.
for p in "${paths[@]}"; do wait_ready 30 "${url[$p]}" "${host[@]}"; done

head -c 768 /dev/urandom | base64 -w0 > "$work/body"
[ "$(wc -c < "$work/body")" = 1024 ] || die "body is not 1024 bytes"

# verify PATH: GET and a 1 KiB POST must come back 200 from the path's demo-app, body intact.
verify() {
  local p=$1 out code text version=${version_of[${app_of[$1]}]}
  for method in GET POST; do
    local data=()
    [ $method = POST ] && data=(--data-binary "@$work/body")
    out=$(curl -sS --max-time 5 -X $method "${data[@]}" "${host[@]}" -w '\n%{http_code}' "${url[$p]}") \
      || die "$p: $method ${url[$p]} failed"
    code=${out##*$'\n'}; text=${out%$'\n'*}
    local want="received=0"; [ $method = POST ] && want="received=1024"
    [[ $code == 200 && $text == "echo $version host=echo:9080 "*"$want"* ]] \
      || die "$p: $method ${url[$p]}: want 200 from demo-app $version with $want, got $code: $text"
  done
}
for p in "${paths[@]}"; do verify "$p"; done
echo "all ${#paths[@]} paths answer 200 from their demo-app"
# The metrics are what the two Weft chains differ in: recorded on one, not on the other.
# (Scraped whole first: `grep -q` stopping early would fail curl's write under pipefail.)
for ip in $net.10 $net.11 $net.70 $net.71; do
  stats=$(curl -fsS --max-time 5 "http://$ip:15090/stats/prometheus") || die "GET http://$ip:15090/stats/prometheus failed"
  recorded=$(grep -c '^istio_requests_total{' <<< "$stats" || true)
  case $ip in
    $net.7?) ((recorded == 0)) || die "the Weft sidecar at $ip records istio_requests_total with --istio-metrics=false" ;;
    *) ((recorded > 0)) || die "the Weft sidecar at $ip records no istio_requests_total" ;;
  esac
done

# ---------------------------------------------------------------------------- measuring
clk=$(getconf CLK_TCK)
# cpu_ticks PID: utime+stime of the whole process (all threads), fields 14 and 15 of
# /proc/PID/stat (counted after the ")" that ends the command name).
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# time_waits: TCP connections of 127.0.20.0/24 in TIME-WAIT, i.e. closed in the last minute
# (the side that closed first keeps them); its growth over a run counts the connections
# closed during it: about oha's 16 when every hop keeps its connections alive.
time_waits() { ss -Htan state time-wait '( src 127.0.20.0/24 or dst 127.0.20.0/24 )' | wc -l; }

# oha_run OUT.json URL SECS [args...]: bounded in time however oha behaves. -w: requests in
# flight at the deadline are waited for, not counted as "aborted due to deadline" errors.
# Started in the background and waited for, so that an interrupt is handled at once (bash
# runs traps only between foreground commands) and cleanup can stop it.
oha_pid=
oha_run() {
  local out=$1 u=$2 s=$3; shift 3
  timeout -k 5 $((s + 30)) "$oha" --no-tui --output-format json -z "${s}s" -w -c 16 "$@" "${host[@]}" "$u" > "$out" &
  oha_pid=$!
  wait $oha_pid || die "oha failed or timed out against $u"
  oha_pid=
  alive || exit 1
}
j() { jq -r "$2" "$1"; }
ok_count() { j "$1" '.statusCodeDistribution["200"] // 0'; }
bad_count() { j "$1" '([.statusCodeDistribution | to_entries[] | select(.key != "200") | .value] | add // 0)
                      + ([.errorDistribution | to_entries[] | .value] | add // 0)'; }

# snap TAG PROC...: CPU counters now, into S[TAG.*]: each PROC's ticks, the machine's
# user+nice+system ticks (/proc/stat), this shell's reaped children's ticks (oha, through
# `timeout`; from the `times` builtin, run in this shell so that it sees them), TIME-WAITs.
declare -A S=()
snap() {
  local tag=$1 n; shift
  for n in "$@"; do S[$tag.$n]=$(cpu_ticks "${pid[$n]}"); done
  read -r "S[$tag.busy]" "S[$tag.total]" < <(awk '/^cpu / { b = $2 + $3 + $4; print b, b + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
  times > "$work/times"
  S[$tag.kids]=$(awk -v c="$clk" 'function s(x) { sub(/s$/, "", x); split(x, a, "m"); return a[1] * 60 + a[2] }
                                NR == 2 { printf "%.0f", (s($1) + s($2)) * c }' "$work/times")
  S[$tag.tw]=$(time_waits)
}
# others_pct BEFORE AFTER PROC...: CPU used by processes outside this benchmark between two
# snaps, in % of the machine (approximate: tick-sampled).
others_pct() {
  local b=$1 a=$2 n ours; shift 2
  ours=$(( ${S[$a.kids]} - ${S[$b.kids]} ))
  for n in "$@"; do ours=$(( ours + ${S[$a.$n]} - ${S[$b.$n]} )); done
  awk -v busy=$(( ${S[$a.busy]} - ${S[$b.busy]} )) -v total=$(( ${S[$a.total]} - ${S[$b.total]} )) -v ours=$ours \
    'BEGIN { o = (busy - ours) / total * 100; printf "%.1f", o < 0 ? 0 : o }'
}

printf 'round\tpath\tmax_rps\tmax_ok\tmax_bad\tproxy_cpu_us\tapp_cpu_us\ttcp_closed\tmax_others_pct\tp50_ms\tp90_ms\tp99_ms\tfixed_rps\tfixed_bad\tfixed_others_pct\thop_conns\n' > "$work/results.tsv"
printf 'round\tpath\tproc\tcpu_us_per_req\n' > "$work/procs.tsv"

measure() {
  local r=$1 p=$2 u=${url[$p]} n a=${app_of[$2]} conns=-
  local procs=(${chain[$p]})
  local base=$work/r$r-$p
  if ((warmup > 0)); then oha_run "$base-warmup.json" "$u" "$warmup"; fi
  echo "round $r: $p: max throughput (${secs}s)"
  snap m0 "${procs[@]}" $a
  oha_run "$base-max.json" "$u" "$secs"
  snap m1 "${procs[@]}" $a
  # Connections the first hop holds to the second at the end of the run: with keep-alive
  # and reuse, about one per connection that was busy at once, not one per request.
  [ -n "${hop2[$p]:-}" ] && conns=$(ss -Htn state established "( dst ${hop2[$p]} )" | wc -l)
  local okn bad rps
  okn=$(ok_count "$base-max.json"); bad=$(bad_count "$base-max.json"); rps=$(j "$base-max.json" '.summary.requestsPerSec')
  ((okn > 0)) || die "$p: no request succeeded in the max run"
  us() { awk -v t="$1" -v c="$clk" -v n="$okn" 'BEGIN { printf "%.2f", t / c * 1e6 / n }'; }
  local total=0 d
  for n in "${procs[@]}"; do
    d=$(( ${S[m1.$n]} - ${S[m0.$n]} ))
    # A hop that burned no CPU while thousands of requests went through is not in the path.
    ((d > 0)) || die "$p: $n used no CPU during the max run: is it really proxying?"
    printf '%s\t%s\t%s\t%s\n' "$r" "$p" "$n" "$(us $d)" >> "$work/procs.tsv"
    total=$((total + d))
  done
  local proxy_us=-; ((${#procs[@]})) && proxy_us=$(us $total)
  echo "round $r: $p: 1000 req/s, POST 1 KiB (${secs}s)"
  snap f0 "${procs[@]}" $a
  oha_run "$base-fixed.json" "$u" "$secs" -q 1000 --latency-correction -m POST -D "$work/body"
  snap f1 "${procs[@]}" $a
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$p" "$rps" "$okn" "$bad" "$proxy_us" \
    "$(us $(( ${S[m1.$a]} - ${S[m0.$a]} )))" $(( ${S[m1.tw]} > ${S[m0.tw]} ? ${S[m1.tw]} - ${S[m0.tw]} : 0 )) "$(others_pct m0 m1 "${procs[@]}" $a)" \
    "$(j "$base-fixed.json" '.latencyPercentiles.p50 * 1000')" \
    "$(j "$base-fixed.json" '.latencyPercentiles.p90 * 1000')" \
    "$(j "$base-fixed.json" '.latencyPercentiles.p99 * 1000')" \
    "$(j "$base-fixed.json" '.summary.requestsPerSec')" \
    "$(bad_count "$base-fixed.json")" "$(others_pct f0 f1 "${procs[@]}" $a)" "$conns" >> "$work/results.tsv"
  ((bad == 0)) || echo "bench: WARNING: $p round $r: $bad failed requests in the max run" >&2
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= rounds; r++)); do
  order=()
  for ((i = 0; i < ${#paths[@]}; i++)); do
    if ((r % 2)); then order+=("${paths[i]}"); else order+=("${paths[${#paths[@]} - 1 - i]}"); fi
  done
  for p in "${order[@]}"; do measure "$r" "$p"; done
done

printf 'path\tproc\trss_kib\thwm_kib\n' > "$work/rss.tsv"
for p in "${paths[@]}"; do
  for n in ${chain[$p]}; do
    printf '%s\t%s\t%s\t%s\n' "$p" "$n" "$(awk '/^VmRSS/ {print $2}' "/proc/${pid[$n]}/status")" \
      "$(awk '/^VmHWM/ {print $2}' "/proc/${pid[$n]}/status")" >> "$work/rss.tsv"
  done
done

# ------------------------------------------------ Istio metrics: memory of 1,000 label sets
# Each request to a server sidecar is recorded under its source's workload, which its
# x-envoy-peer-metadata header names: 1,000 requests from 1,000 distinct workloads make 1,000
# series. The same requests go to the chain without metrics, whose growth is the rest of the
# proxy's. series.tsv: the server sidecar, its series, its RSS before and after.
# pb_entry KEY VALUE: one `fields` entry of a protobuf Struct with a string value, as printf
# %b escapes (keys and values shorter than 100 bytes: one-byte lengths).
pb_entry() {
  local k=$1 v=$2
  printf '\\x0a\\x%02x\\x0a\\x%02x%s\\x12\\x%02x\\x1a\\x%02x%s' \
    $((2 + ${#k} + 2 + 2 + ${#v})) ${#k} "$k" $((2 + ${#v})) ${#v} "$v"
}
printf 'proc\tseries\trss_before_kib\trss_after_kib\n' > "$work/series.tsv"
for target in "server-sidecar $net.11" "server-sidecar-nm $net.71"; do
  read -r name ip <<< "$target"
  : > "$work/peers.curl"
  for i in $(seq 1 1000); do
    meta=$(printf '%b' "$(pb_entry WORKLOAD_NAME "bench-client-$i")$(pb_entry NAMESPACE bench)" | base64 -w0)
    # `next` separates the requests (one after the last would start an empty one).
    ((i == 1)) || echo next >> "$work/peers.curl"
    printf 'url = "http://%s:15006/"\nheader = "Host: echo:9080"\nheader = "x-envoy-peer-metadata-id: bench-%s"\nheader = "x-envoy-peer-metadata: %s"\noutput = /dev/null\n' \
      "$ip" "$i" "$meta" >> "$work/peers.curl"
  done
  before=$(awk '/^VmRSS/ {print $2}' "/proc/${pid[$name]}/status")
  curl -sS --fail -K "$work/peers.curl" || die "$name: the 1,000 requests with distinct peers failed"
  after=$(awk '/^VmRSS/ {print $2}' "/proc/${pid[$name]}/status")
  series=$(curl -fsS --max-time 5 "http://$ip:15090/stats/prometheus" \
    | grep -c '^istio_requests_total{.*source_workload="bench-client-' || true)
  printf '%s\t%s\t%s\t%s\n' "$name" "$series" "$before" "$after" >> "$work/series.tsv"
done
[ "$(awk -F'\t' '$1 == "server-sidecar" {print $2}' "$work/series.tsv")" = 1000 ] \
  || die "the server sidecar does not show 1,000 series for 1,000 distinct peers: $(cat "$work/series.tsv")"

# -------------------------------------------------------------------------------- report
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(GIT_OPTIONAL_LOCKS=0 git -C "$root" status --porcelain -- proxy crates control-plane 2>/dev/null)" ] && commit="$commit + uncommitted changes"
{
  inv="bench/run.sh $secs"
  [ "$rounds" = 2 ] || inv="ROUNDS=$rounds $inv"
  [ "${NO_BUILD:-}" = 1 ] && inv="NO_BUILD=1 $inv"
  echo "invocation=$inv"
  echo "date=$(date -u +%Y-%m-%d)"
  echo "secs=$secs"
  echo "rounds=$rounds"
  echo "warmup=$warmup"
  echo "cores=$(nproc)"
  echo "kernel=$(uname -r)"
  echo "loadavg_start=$load_start"
  echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "oha=$("$oha" --version | awk '{print $2}')"
  echo "haproxy=$(haproxy -v | awk 'NR == 1 {print $3}')"
  echo "nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///')"
  echo "weft_threads=$weft_threads_how"
  echo "nice=$(ps -o ni= -p $$ | tr -d ' ')"
  echo "commit=$commit"
  echo "built=$(date -u -r "$(ls -t "$bin/weft-controller" "$bin/weft-proxy" "$bin/weftctl" | head -n1)" +%Y-%m-%dT%H:%MZ)"
  echo "openssl=$(openssl version | awk '{print $2}')"
} > "$work/meta.env"

mkdir -p "$root/bench/last-run"
cp "$work/results.tsv" "$work/procs.tsv" "$work/rss.tsv" "$work/tls.tsv" "$work/series.tsv" "$work/meta.env" "$root/bench/last-run/"
"$root/bench/report.sh" "$root/bench/last-run" > "$root/bench/RESULTS.md"
cat "$root/bench/RESULTS.md"
bad_total=$(awk -F'\t' 'NR > 1 { s += $5 + $14 } END { print s + 0 }' "$work/results.tsv")
((bad_total == 0)) || die "$bad_total failed requests across the runs (see the tables)"
