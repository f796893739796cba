#!/usr/bin/env bash
# Renders bench/RESULTS.md from the raw numbers bench/run.sh saved (default: bench/last-run/).
# Usage: bench/report.sh [DIR] > bench/RESULTS.md
set -euo pipefail
dir=${1:-$(cd "$(dirname "$0")" && pwd)/last-run}
for f in results.tsv procs.tsv rss.tsv meta.env; do [ -f "$dir/$f" ] || { echo "report: missing $dir/$f" >&2; exit 1; }; done
meta() { sed -n "s/^$1=//p" "$dir/meta.env"; }
secs=$(meta secs); rounds=$(meta rounds)
rss_target_kib=10240
# tls.tsv (what the mTLS server hops negotiated) exists from the runs that had mTLS paths on.
tls=$dir/tls.tsv; [ -f "$tls" ] || tls=/dev/null

cat <<EOF
# Benchmark results: Weft vs HAProxy vs nginx, plaintext and mutual TLS

Produced by \`$(meta invocation)\` on $(meta date) (git HEAD $(meta commit) at run time;
release binaries built $(meta built));
the tables below are generated from \`bench/last-run/*.tsv\` by \`bench/report.sh\`.

## What was measured, and how

Seven paths on loopback (127.0.20.0/24). The direct path and the three plaintext chains go to
one upstream, the three mutual-TLS chains to a second one (the same program, at the mTLS server
sidecar's address, because Weft's inbound cluster sends to \`<instance ip>:<app port>\`): both are
\`weftctl demo-app\` (hyper, one process, tokio's default thread count).

| path | chain |
| --- | --- |
| direct | oha → demo-app |
| Weft | oha → client sidecar :15001 → server sidecar :15006 → demo-app (xDS config from weft-controller) |
| HAProxy | oha → haproxy A → haproxy B → demo-app |
| nginx | oha → nginx A → nginx B → demo-app |
| Weft mTLS | oha → client sidecar :15001 ⇒ server sidecar :15006 → demo-app 2 (a second weft-controller, with its CA) |
| HAProxy mTLS | oha → haproxy A ⇒ haproxy B :18443 → demo-app 2 |
| nginx mTLS | oha → nginx A ⇒ nginx B :18443 → demo-app 2 |

⇒ is mutual TLS, TLS 1.3 only, ECDSA P-256 certificates on both sides, and the only difference
between a chain and its mTLS twin; oha → first hop and last hop → app are plaintext HTTP/1.1 on
every path.

- **Weft, Istio metrics off**: the plaintext Weft chain again (a third \`weft-controller\`, its own
  sidecars and demo-app) with \`--istio-metrics=false\`: no \`istio_*\` recording and no peer
  metadata exchange. Before measuring, the run checks that the Weft sidecars record
  \`istio_requests_total\` and these do not.
- **Weft mTLS**: a second \`weft-controller\` (own config dir, \`--ca-dir\` with a self-signed
  P-256 root made at its first start, \`--ca-token-dir\` with bootstrap tokens) serves the same
  \`echo:9080\` ServiceEntry, with a WorkloadEntry at the server sidecar's address that has
  \`serviceAccount: echo\` and the label \`security.istio.io/tlsMode: istio\`, and a mesh-wide
  PeerAuthentication \`STRICT\` in \`istio-system\`. The sidecars get their workload
  certificates (SPIFFE \`…/sa/client\` and \`…/sa/echo\`) from it; the client sidecar's cluster
  speaks TLS to the endpoint (ALPN \`istio-peer-exchange\`, \`istio\`), the server sidecar
  accepts only TLS.
- **HAProxy / nginx mTLS**: a CA, a server certificate (\`server.bench\`) and a client certificate
  made with \`openssl\` $(meta openssl) for the run, all ECDSA P-256 / SHA-256. B requires and
  verifies the client certificate (haproxy \`verify required\`, nginx \`ssl_verify_client on\`); A
  verifies B's chain and name (haproxy \`verify required verifyhost\`, nginx \`proxy_ssl_verify on\`,
  \`proxy_ssl_name\`) and presents its certificate; TLS 1.3 only (\`ssl-min-ver/ssl-max-ver
  TLSv1.3\`, \`ssl_protocols\`/\`proxy_ssl_protocols TLSv1.3\`); connections reused (haproxy
  \`http-reuse always\` and its default TLS session cache for the server, nginx upstream
  \`keepalive 64\` and \`proxy_ssl_session_reuse on\`). Cipher suites and key-exchange groups are
  each library's defaults: OpenSSL's and rustls's (Weft, ring provider) both put
  TLS_AES_256_GCM_SHA384 and X25519 first, so all the mTLS hops should run the same cipher (the
  table below is what an OpenSSL client got from each server hop, not a capture of the hops).
- Before measuring, every mTLS server hop must refuse plaintext HTTP (Weft and HAProxy: no HTTP
  answer at all; nginx: its 400 for plain HTTP on a TLS port),
  complete a TLS 1.3 handshake with a P-256 certificate that its CA verifies, and refuse a TLS
  client that has no certificate; the Weft sidecars must show their SPIFFE identities at
  \`/certs\`. Else the run fails. What \`openssl s_client\` negotiated with each:

EOF

awk -F'\t' 'NR == 1 { next }
  NR == 2 { print "| path | server hop | protocol | cipher | key exchange | server certificate | ALPN | what a TLS client without a certificate / a plaintext HTTP client got |"
            print "| --- | --- | --- | --- | --- | --- | --- | --- |" }
  { printf "| %s | %s | %s | %s | %s | %s, %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, ($8 == "" ? "none" : $8), $9 }' "$tls"

cat <<EOF

- Machine: $(meta cores) cores, shared by everything: oha, the app and the chain's two proxies
  (kernel $(meta kernel); load average $(meta loadavg_start) before the runs, $(meta loadavg_end) after).
- Tools: oha $(meta oha), HAProxy $(meta haproxy), nginx $(meta nginx) (Debian packages).
- One worker thread per proxy: weft-proxy with $(meta weft_threads); haproxy \`nbthread 1\`
  (\`-db\`, one process); nginx \`worker_processes 1; master_process off; daemon off;\` (the one
  process is the worker). All keep upstream connections alive: haproxy \`mode http\`,
  \`option http-keep-alive\`, \`http-reuse always\`; nginx \`upstream { keepalive 64; }\`,
  \`proxy_http_version 1.1\`, \`proxy_set_header Connection ""\`, \`keepalive_requests 1000000\`
  both sides. No access logs anywhere; Weft at log level \`warn\`. Configs: \`bench/run.sh\`.
- Before measuring, each path must answer a GET and a 1 KiB POST with 200 from the demo-app
  (body checked, \`received=1024\`), or the run fails.
- Per path and round: $(meta warmup) s warm-up; then **max throughput**: oha, 16 connections,
  HTTP/1.1 keep-alive, GET, as fast as possible, ${secs} s; then **latency at a fixed 1000 req/s**:
  16 connections, POST with a 1 KiB body, latency-corrected, ${secs} s.
- **CPU µs/request**: utime+stime (\`/proc/PID/stat\` fields 14+15, all threads, ÷ CLK_TCK) of
  the chain's two proxy processes over the max run, ÷ the 200 responses of that run. The app's
  is shown for reference.
- **Connections to hop 2**: TCP connections from the first hop to the second, established at
  the end of the max run. With keep-alive and reuse this stays around the 16 connections that
  were busy at once (for TLS: a handshake per connection, not per request).
- **TCP closed**: net growth of the TIME-WAIT sockets of 127.0.20.0/24 over the max run (0 if
  they shrank), i.e. roughly the connections closed during it. Older ones expiring after 60 s
  offset it, so 0 to a few dozen all mean "connections kept alive" (oha's own 16 close at its
  end); a hop that opened a connection per request would show thousands.
- **RSS**: \`VmRSS\` of each proxy process after all runs.
- **Others**: CPU that processes outside the benchmark used during a run (machine-wide
  user+system ticks from \`/proc/stat\` minus the chain's, the app's and oha's), as a % of the
  machine: a noise gauge, since the machine is shared. Everything measured (app, proxies, oha)
  ran at nice $(meta nice), to be disturbed less by that other work.
- $rounds rounds; round 1 runs direct, Weft, HAProxy, nginx, Weft mTLS, HAProxy mTLS, nginx mTLS;
  round 2 the reverse order (and so on alternately). Medians are over rounds (with 2 rounds, the
  mean of the two).
EOF

awk -F'\t' -v rounds="$rounds" -v rss_target="$rss_target_kib" '
function fmt(v, d) { return (v == "" || v == "-") ? "—" : sprintf("%." d "f", v) }
function signed(v, d) { return (v == "" || v == "-") ? "—" : sprintf("%+." d "f", v) }
function pct(v) { return (v == "" || v == "-") ? "—" : sprintf("%.0f%%", v) }
function thou(v,   s, neg, out) {
  if (v == "" || v == "-") return "—"
  s = sprintf("%.0f", v); neg = (s ~ /^-/); if (neg) s = substr(s, 2); out = ""
  while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
  return (neg ? "-" : "") s out
}
# median of x[1..n]
function median(x, n,   i, j, t) {
  for (i = 2; i <= n; i++) { t = x[i]; for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]; x[j + 1] = t }
  return (n % 2) ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
}
function collect(p, m,   r, n) { delete tmp; n = 0; for (r = 1; r <= rounds; r++) if ((p, m, r) in v && v[p, m, r] != "-" && v[p, m, r] != "") tmp[++n] = v[p, m, r] + 0; return n }
function med(p, m,   n) { n = collect(p, m); return n ? median(tmp, n) : "-" }
function best(p, m, want_hi,   n, i, b) { n = collect(p, m); if (!n) return "-"; b = tmp[1]; for (i = 2; i <= n; i++) if (want_hi ? tmp[i] > b : tmp[i] < b) b = tmp[i]; return b }
function sum(p, m,   n, i, s) { n = collect(p, m); if (!n) return "-"; s = 0; for (i = 1; i <= n; i++) s += tmp[i]; return s }
function hi(p, m,   n, i, b) { n = collect(p, m); if (!n) return "-"; b = tmp[1]; for (i = 2; i <= n; i++) if (tmp[i] > b) b = tmp[i]; return b }
function lo(p, m,   n, i, b) { n = collect(p, m); if (!n) return "-"; b = tmp[1]; for (i = 2; i <= n; i++) if (tmp[i] < b) b = tmp[i]; return b }
# row LABEL: one line of the side-by-side table from c[1..NP]
function row(label,   k, line) { line = "| " label " |"; for (k = 1; k <= NP; k++) line = line " " c[k] " |"; print line }
function hops(p, r,   i, s) { s = ""; for (i = 1; i <= nproc[p]; i++) s = s (i > 1 ? " / " : "") fmt(pc[p, proc[p, i], r], 1); return s }
function hopsmed(p,   i, s, n, r) {
  s = ""
  for (i = 1; i <= nproc[p]; i++) { delete tmp; n = 0; for (r = 1; r <= rounds; r++) if ((p, proc[p, i], r) in pc) tmp[++n] = pc[p, proc[p, i], r] + 0
    s = s (i > 1 ? " / " : "") (n ? fmt(median(tmp, n), 1) : "—") }
  return s
}
function has(p) { return (p in seen) }
FNR == 1 { file++; if (file == 1) for (i = 1; i <= NF; i++) col[$i] = i; next }
file == 1 {
  p = $2; r = $1
  for (m in col) v[p, m, r] = $col[m]
  seen[p] = 1
}
file == 2 { if (!(($2, $3) in hasproc)) { hasproc[$2, $3] = 1; proc[$2, ++nproc[$2]] = $3 }; pc[$2, $3, $1] = $4 }
file == 3 { rss[$1, $2] = $3; hwm[$1, $2] = $4 }
END {
  NP = split("direct weft weft-nometrics haproxy nginx weft-mtls haproxy-mtls nginx-mtls", P, " ")
  name["direct"] = "direct"; name["weft"] = "Weft (2 sidecars)"; name["haproxy"] = "HAProxy ×2"; name["nginx"] = "nginx ×2"
  name["weft-nometrics"] = "Weft, Istio metrics off"; short["weft-nometrics"] = "Weft (metrics off)"
  name["weft-mtls"] = "Weft mTLS"; name["haproxy-mtls"] = "HAProxy ×2 mTLS"; name["nginx-mtls"] = "nginx ×2 mTLS"
  short["weft"] = "Weft"; short["haproxy"] = "HAProxy"; short["nginx"] = "nginx"
  short["weft-mtls"] = "Weft mTLS"; short["haproxy-mtls"] = "HAProxy mTLS"; short["nginx-mtls"] = "nginx mTLS"
  for (r = 1; r <= rounds; r++) for (k = 1; k <= NP; k++) {
    p = P[k]; if (p == "direct") v[p, "added_p90", r] = "-"
    else if ((p, "p90_ms", r) in v && ("direct", "p90_ms", r) in v) v[p, "added_p90", r] = v[p, "p90_ms", r] - v["direct", "p90_ms", r]
  }

  print ""
  print "## Side by side"
  print ""
  printf "Median of %d rounds; [best round] where it matters. Latencies in ms.\n\n", rounds
  for (k = 1; k <= NP; k++) c[k] = name[P[k]]
  row("")
  line = "| --- |"; for (k = 1; k <= NP; k++) line = line " ---: |"; print line
  for (k = 1; k <= NP; k++) { p = P[k]; c[k] = thou(med(p, "max_rps")) " [" thou(best(p, "max_rps", 1)) "]" }
  row("**max req/s**, 16 connections")
  for (k = 1; k <= NP; k++) { p = P[k]; c[k] = thou(sum(p, "max_bad")) }
  row("failed requests in the max runs (all rounds)")
  for (k = 1; k <= NP; k++) { p = P[k]; c[k] = (p == "direct") ? "—" : fmt(med(p, "proxy_cpu_us"), 1) " [" fmt(best(p, "proxy_cpu_us", 0), 1) "]" }
  row("**proxy CPU µs/request**, both proxies")
  for (k = 1; k <= NP; k++) { p = P[k]; c[k] = (p == "direct") ? "—" : hopsmed(p) }
  row("… per proxy (first hop / second hop)")
  for (k = 1; k <= NP; k++) { p = P[k]; c[k] = fmt(med(p, "app_cpu_us"), 1) }
  row("app CPU µs/request")
  for (k = 1; k <= NP; k++) { p = P[k]; c[k] = (p == "direct") ? "—" : thou(hi(p, "hop_conns")) }
  row("connections hop 1 → hop 2 at the end of a max run (highest round)")
  for (k = 1; k <= NP; k++) { p = P[k]; c[k] = thou(hi(p, "tcp_closed")) }
  row("TCP connections closed during a max run (highest round)")
  for (q = 50; q <= 99; q += (q == 50 ? 40 : 9)) {
    for (k = 1; k <= NP; k++) { p = P[k]; c[k] = fmt(med(p, "p" q "_ms"), 3) }
    row((q == 90 ? "**p90**" : "p" q) " at 1000 req/s, POST 1 KiB")
  }
  for (k = 1; k <= NP; k++) { p = P[k]; c[k] = (p == "direct") ? "—" : signed(med(p, "added_p90"), 3) }
  row("**added p90** (path − direct, same round)")
  for (k = 1; k <= NP; k++) { p = P[k]; c[k] = fmt(lo(p, "fixed_rps"), 1) " / " thou(sum(p, "fixed_bad")) }
  row("fixed-rate runs: lowest achieved req/s / failed")
  for (k = 1; k <= NP; k++) { p = P[k]; c[k] = pct(hi(p, "max_others_pct")) " / " pct(hi(p, "fixed_others_pct")) }
  row("other processes’ CPU, max / fixed runs (highest round), % of machine")
  for (k = 1; k <= NP; k++) {
    p = P[k]; c[k] = "—"
    if (p != "direct" && has(p)) { c[k] = ""; for (i = 1; i <= nproc[p]; i++) c[k] = c[k] (i > 1 ? " / " : "") thou(rss[p, proc[p, i]]) }
  }
  row("**RSS** after the runs, KiB (first / second hop)")
  for (k = 1; k <= NP; k++) {
    p = P[k]; c[k] = "—"
    if (p != "direct" && has(p)) { c[k] = ""; for (i = 1; i <= nproc[p]; i++) c[k] = c[k] (i > 1 ? " / " : "") thou(hwm[p, proc[p, i]]) }
  }
  row("peak RSS (VmHWM), KiB")

  print ""
  print "## Ratios"
  print ""
  printf "Weft against each two-hop chain, plaintext against plaintext and mTLS against mTLS, per round (the paths of a round ran back to back) and the median of the rounds.\n\n"
  ratio_header()
  split("haproxy nginx", O, " ")
  for (o = 1; o <= 2; o++) ratio_row("Weft max req/s ÷ " short[O[o]] "’s", "weft", "max_rps", O[o], "x")
  for (o = 1; o <= 2; o++) ratio_row("Weft CPU µs/request ÷ " short[O[o]] "’s", "weft", "proxy_cpu_us", O[o], "x")
  for (o = 1; o <= 2; o++) ratio_row("Weft added p90 − " short[O[o]] "’s added p90, ms", "weft", "added_p90", O[o], "d")
  for (o = 1; o <= 2; o++) ratio_row("Weft added p90 ÷ " short[O[o]] "’s added p90", "weft", "added_p90", O[o], "x")
  for (o = 1; o <= 2; o++) ratio_row("Weft mTLS max req/s ÷ " short[O[o] "-mtls"] "’s", "weft-mtls", "max_rps", O[o] "-mtls", "x")
  for (o = 1; o <= 2; o++) ratio_row("Weft mTLS CPU µs/request ÷ " short[O[o] "-mtls"] "’s", "weft-mtls", "proxy_cpu_us", O[o] "-mtls", "x")
  for (o = 1; o <= 2; o++) ratio_row("Weft mTLS added p90 − " short[O[o] "-mtls"] "’s added p90, ms", "weft-mtls", "added_p90", O[o] "-mtls", "d")

  print ""
  print "## What Istio’s metrics cost"
  print ""
  print "Weft’s plaintext chain records Istio’s standard metrics on both sidecars and exchanges peer metadata"
  print "(`x-envoy-peer-metadata` on every request and response); the same chain with `--istio-metrics=false`"
  print "does neither. Target: **≤ 5 % more proxy CPU per request** with the metrics on (median of the per-round ratios)."
  print ""
  ratio_header()
  ratio_row("Weft ÷ Weft (metrics off), proxy CPU µs/request (target ≤ 1.05×)", "weft", "proxy_cpu_us", "weft-nometrics", "x")
  ratio_row("Weft ÷ Weft (metrics off), max req/s", "weft", "max_rps", "weft-nometrics", "x")
  ratio_row("Weft − Weft (metrics off), proxy CPU µs/request", "weft", "proxy_cpu_us", "weft-nometrics", "d")
  x = rmed["weft", "proxy_cpu_us", "weft-nometrics", "x"]
  print ""
  if (x == "") print "Metrics cost: **not measured**."
  else printf "Metrics cost: %.1f vs %.1f µs per request, %.2f× (target ≤ 1.05×): **%s**.\n", med("weft", "proxy_cpu_us"), med("weft-nometrics", "proxy_cpu_us"), x, x <= 1.05 ? "met" : "not met"

  print ""
  print "## Mutual TLS"
  print ""
  print "The project’s targets for mutual TLS compare Weft’s mTLS chain with HAProxy’s: **≥ 1.25× its max"
  print "requests/s** and **≤ 1× its proxy CPU µs per request**. The same ratios against nginx are shown for"
  print "reference. Verdicts are on the median of the per-round ratios."
  print ""
  ratio_header()
  ratio_row("Weft mTLS ÷ HAProxy mTLS, max req/s (target ≥ 1.25×)", "weft-mtls", "max_rps", "haproxy-mtls", "x")
  ratio_row("Weft mTLS ÷ HAProxy mTLS, proxy CPU µs/request (target ≤ 1×)", "weft-mtls", "proxy_cpu_us", "haproxy-mtls", "x")
  ratio_row("Weft mTLS ÷ nginx mTLS, max req/s", "weft-mtls", "max_rps", "nginx-mtls", "x")
  ratio_row("Weft mTLS ÷ nginx mTLS, proxy CPU µs/request", "weft-mtls", "proxy_cpu_us", "nginx-mtls", "x")
  print ""
  print "What mutual TLS costs each proxy: its mTLS chain ÷ its plaintext chain (same round), and the"
  print "CPU µs per request that TLS adds to the two proxies together."
  print ""
  ratio_header()
  split("weft haproxy nginx", Q, " ")
  for (q = 1; q <= 3; q++) ratio_row(short[Q[q]] ": mTLS ÷ plaintext, max req/s", Q[q] "-mtls", "max_rps", Q[q], "x")
  for (q = 1; q <= 3; q++) ratio_row(short[Q[q]] ": mTLS ÷ plaintext, proxy CPU µs/request", Q[q] "-mtls", "proxy_cpu_us", Q[q], "x")
  for (q = 1; q <= 3; q++) ratio_row(short[Q[q]] ": mTLS − plaintext, proxy CPU µs/request", Q[q] "-mtls", "proxy_cpu_us", Q[q], "d")
  print ""
  print "| mTLS target | measured (median) | rounds met | verdict |"
  print "| --- | --- | ---: | --- |"
  mtarget("Weft mTLS max req/s ≥ 1.25× HAProxy mTLS’s", "max_rps", "haproxy-mtls", ">=", 1.25, 0)
  mtarget("Weft mTLS CPU µs/request ≤ 1× HAProxy mTLS’s", "proxy_cpu_us", "haproxy-mtls", "<=", 1, 1)
  mtarget("(reference) Weft mTLS max req/s ≥ 1.25× nginx mTLS’s", "max_rps", "nginx-mtls", ">=", 1.25, 0)
  mtarget("(reference) Weft mTLS CPU µs/request ≤ 1× nginx mTLS’s", "proxy_cpu_us", "nginx-mtls", "<=", 1, 1)
  summary()

  print ""
  print "## Targets"
  print ""
  print "| target | measured (median) | rounds met | verdict |"
  print "| --- | --- | ---: | --- |"
  target("Weft max req/s ≥ 1.0× HAProxy’s", "max_rps", ">=",
         sprintf("%s vs %s req/s = %.2f×", thou(med("weft", "max_rps")), thou(med("haproxy", "max_rps")), rmed["weft", "max_rps", "haproxy", "x"]))
  target("Weft CPU µs/request ≤ HAProxy’s", "proxy_cpu_us", "<=",
         sprintf("%.1f vs %.1f µs = %.2f×", med("weft", "proxy_cpu_us"), med("haproxy", "proxy_cpu_us"), rmed["weft", "proxy_cpu_us", "haproxy", "x"]))
  target("Weft added p90 at 1000 req/s ≤ HAProxy’s", "added_p90", "<=",
         sprintf("%+.3f vs %+.3f ms", med("weft", "added_p90"), med("haproxy", "added_p90")))
  mtarget("Weft mTLS max req/s ≥ 1.25× HAProxy mTLS’s", "max_rps", "haproxy-mtls", ">=", 1.25, 0)
  mtarget("Weft mTLS CPU µs/request ≤ 1× HAProxy mTLS’s", "proxy_cpu_us", "haproxy-mtls", "<=", 1, 1)
  rss_row("weft", "")
  rss_row("weft-mtls", " (mTLS sidecars)")

  print ""
  print "## Every run"
  print ""
  print "Max run: requests/s, failed requests, CPU, connections hop 1 → hop 2 at its end, TCP connections closed, and the"
  print "CPU other processes on the machine used meanwhile (“others”, % of the machine). Fixed run (1000 req/s, POST 1 KiB):"
  print "latencies in ms, achieved rate, failed requests, others."
  print ""
  print "| round | path | max req/s | failed | proxy CPU µs/req (per proxy) | app CPU µs/req | hop conns | TCP closed | others | p50 | p90 | p99 | added p90 | req/s | failed | others |"
  print "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for (r = 1; r <= rounds; r++) {
    for (k = 1; k <= NP; k++) {
      p = (r % 2) ? P[k] : P[NP + 1 - k]
      if (!((p, "max_rps", r) in v)) continue
      cpu = (p == "direct") ? "—" : fmt(v[p, "proxy_cpu_us", r], 1) " (" hops(p, r) ")"
      printf "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r, name[p], thou(v[p, "max_rps", r]), thou(v[p, "max_bad", r]),
        cpu, fmt(v[p, "app_cpu_us", r], 1), (p == "direct") ? "—" : thou(v[p, "hop_conns", r]), thou(v[p, "tcp_closed", r]), pct(v[p, "max_others_pct", r]),
        fmt(v[p, "p50_ms", r], 3), fmt(v[p, "p90_ms", r], 3), fmt(v[p, "p99_ms", r], 3),
        (p == "direct") ? "—" : signed(v[p, "added_p90", r], 3), fmt(v[p, "fixed_rps", r], 1), thou(v[p, "fixed_bad", r]), pct(v[p, "fixed_others_pct", r])
    }
  }
}
function ratio_header(   r, hdr, sep) {
  hdr = "| |"; sep = "| --- |"
  for (r = 1; r <= rounds; r++) { hdr = hdr " round " r " |"; sep = sep " ---: |" }
  print hdr " median |"; print sep " ---: |"
}
# rval A M O KIND R: path A against path O in metric M, round R: a ratio (x) or a difference (d);
# "" when either is missing.
function rval(a, m, o, kind, r,   x, y) {
  if (!((a, m, r) in v) || !((o, m, r) in v) || v[a, m, r] == "-" || v[o, m, r] == "-") return ""
  x = v[a, m, r] + 0; y = v[o, m, r] + 0
  if (kind == "d") return x - y
  return (y == 0) ? "" : x / y
}
function ratio_row(label, a, m, o, kind,   r, n, x, line) {
  line = "| " label " |"; n = 0; delete rr
  for (r = 1; r <= rounds; r++) { x = rval(a, m, o, kind, r); if (x != "") rr[++n] = x; line = line " " (x == "" ? "—" : (kind == "d" ? sprintf("%+.3f", x) : sprintf("%.2f", x))) " |" }
  rmed[a, m, o, kind] = n ? median(rr, n) : ""
  rcount[a, m, o, kind] = n
  print line " " (n ? (kind == "d" ? sprintf("%+.3f", rmed[a, m, o, kind]) : sprintf("%.2f", rmed[a, m, o, kind])) : "—") " |"
}
# target: Weft vs HAProxy (plaintext), per round and on the medians.
function target(label, m, op, measured,   r, k, a, b, ok) {
  k = 0
  for (r = 1; r <= rounds; r++) { a = v["weft", m, r] + 0; b = v["haproxy", m, r] + 0; if (op == ">=" ? a >= b : a <= b) k++ }
  a = med("weft", m) + 0; b = med("haproxy", m) + 0; ok = (op == ">=") ? a >= b : a <= b
  printf "| %s | %s | %d of %d | %s |\n", label, measured, k, rounds, ok ? "**met**" : "**not met**"
}
# mtarget: Weft mTLS ÷ O (an mTLS chain) in M against FACTOR, per round and on the median of
# the per-round ratios (computed here: the rows above may not have run).
function mtarget(label, m, o, op, factor, digits,   r, k, n, x, med_x, ok, measured) {
  k = 0; n = 0; delete rr
  for (r = 1; r <= rounds; r++) { x = rval("weft-mtls", m, o, "x", r); if (x == "") continue; rr[++n] = x; if (op == ">=" ? x >= factor : x <= factor) k++ }
  if (!n) { printf "| %s | not measured | — | **not measured** |\n", label; return }
  med_x = median(rr, n); ok = (op == ">=") ? med_x >= factor : med_x <= factor
  if (m == "max_rps") measured = sprintf("%s vs %s req/s: %.2f×", thou(med("weft-mtls", m)), thou(med(o, m)), med_x)
  else measured = sprintf("%.1f vs %.1f µs: %.2f×", med("weft-mtls", m), med(o, m), med_x)
  printf "| %s | %s | %d of %d | %s |\n", label, measured, k, n, ok ? "**met**" : "**not met**"
}
# summary: the mTLS verdict in words, from the medians of the per-round ratios above.
function summary(   rps, cpu, plain, aw, ah, an) {
  rps = rmed["weft-mtls", "max_rps", "haproxy-mtls", "x"]; cpu = rmed["weft-mtls", "proxy_cpu_us", "haproxy-mtls", "x"]
  plain = rmed["weft", "proxy_cpu_us", "haproxy", "x"]
  aw = rmed["weft-mtls", "proxy_cpu_us", "weft", "d"]; ah = rmed["haproxy-mtls", "proxy_cpu_us", "haproxy", "d"]; an = rmed["nginx-mtls", "proxy_cpu_us", "nginx", "d"]
  if (rps == "" || cpu == "") return
  print ""
  printf "**In short:** Weft’s mTLS chain made %.2f× HAProxy’s mTLS requests/s (target ≥ 1.25×: **%s**) and\n", rps, ((rps >= 1.25) ? "met" : "not met")
  printf "used %.2f× its proxy CPU per request (target ≤ 1×: **%s**).", cpu, ((cpu <= 1) ? "met" : "not met")
  if (aw != "" && ah != "" && an != "" && plain != "") {
    printf " Mutual TLS added %.1f µs per request to\n", aw
    printf "Weft’s two sidecars, %.1f to HAProxy’s two processes and %.1f to nginx’s (medians of the rounds),\n", ah, an
    printf "while in plaintext Weft used %.2f× HAProxy’s CPU per request: ", plain
    if (aw < ah && plain > 1) print "the gap that remains with mTLS is Weft’s HTTP path, not its TLS."
    else if (aw >= ah) print "TLS itself costs Weft more than HAProxy here."
    else print "Weft’s TLS is cheaper than HAProxy’s here."
  } else print ""
}
function rss_row(p, what,   i, n, worst, wl, edge) {
  if (!has(p)) return
  worst = 0; wl = ""
  for (i = 1; i <= nproc[p]; i++) { n = proc[p, i]; wl = wl (i > 1 ? ", " : "") n " " thou(rss[p, n]); if (rss[p, n] + 0 > worst) worst = rss[p, n] + 0 }
  edge = (worst - rss_target) / rss_target; if (edge < 0) edge = -edge
  printf "| RSS ≤ 10 MiB (%s KiB) per sidecar%s | %s KiB | — | %s%s |\n", thou(rss_target), what, wl, (worst <= rss_target) ? "**met**" : "**not met**",
    (edge < 0.03) ? " (on the edge: within 3% of the limit)" : ""
}
' "$dir/results.tsv" "$dir/procs.tsv" "$dir/rss.tsv"

if [ -f "$dir/series.tsv" ]; then
  echo
  echo "## Istio metrics: memory of 1,000 label sets"
  echo
  echo "After the runs, 1,000 requests from 1,000 distinct source workloads (each named by its"
  echo "\`x-envoy-peer-metadata\` header) go to each plaintext chain's server sidecar: 1,000 series of"
  echo "Istio's request metrics (a counter and three histograms each) where the metrics are on. The"
  echo "chain without metrics takes the same requests: its growth is what the rest of the proxy keeps."
  echo "The number of series is capped (\`--max-metric-series\`, 10,000 by default)."
  echo
  echo "| server sidecar | series | RSS before, KiB | RSS after, KiB | growth, KiB | per series, bytes |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  awk -F'\t' 'NR > 1 {
    g = $4 - $3
    per = ($2 > 0) ? sprintf("%.0f", g * 1024 / $2) : "—"
    printf "| %s | %s | %s | %s | %+d | %s |\n", $1, $2, $3, $4, g, per
  }' "$dir/series.tsv"
fi

cat <<'EOF2'

## Reading these numbers

- Two cores carry oha, the app and both proxies of a chain, so "max req/s" is bounded by the
  CPU all of them need per request, not by one proxy's limit; a cheaper proxy leaves more CPU
  to the others and gets more requests through. CPU µs/request is the per-request cost that
  stays meaningful on a bigger machine; the fixed-rate latencies show what a request pays at
  a moderate load.
- The machine is shared with other work (see "others"): compare paths within a round (they
  ran back to back) rather than absolute numbers across runs, and distrust a p99 from a
  run whose "others" column is high.
- "Added p90" is the path's p90 minus the direct p90 of the same round, i.e. what two
  proxies add to a request at 1000 req/s.
- Weft's client → server sidecar hop is plaintext HTTP/1.1 in the plaintext chain and mutual
  TLS 1.3 in the mTLS chain, like the other two proxies' chains; Weft also routes by xDS config
  (virtual host by `Host`, route, cluster, endpoint) and adds `x-request-id`, while the HAProxy
  and nginx chains forward to one fixed upstream.
- The mTLS chains go to a second demo-app (the same program, on another loopback address): their
  app CPU and "added p90" (against the direct path to the first app) compare across the mTLS
  chains; against the plaintext chains they compare only as far as the two apps behave alike.
- All connections between the hops are long-lived, so a TLS handshake is paid once per
  connection (see "connections hop 1 → hop 2" and "TCP closed"): the mTLS cost measured here
  is record encryption/decryption and the TLS I/O path, not handshakes.

## Earlier runs

Before this comparison, `bench/run.sh` measured only direct vs Weft, with the proxies on
tokio's default thread count (2 workers on 2 cores), three runs on 2026-11-21:

| | run 1 | run 2 | run 3 |
| --- | ---: | ---: | ---: |
| max req/s, Weft ÷ direct | 0.26 (23.7k / 92.6k) | 0.25 (21.0k / 84.3k) | 0.30 (24.7k / 82.3k) |
| p50 added by two sidecars at 1000 req/s | +0.158 ms | +0.196 ms | +0.136 ms |
| p99 added by two sidecars at 1000 req/s | +0.293 ms | +0.349 ms | +0.235 ms |
| sidecar RSS | 10.0 MB | 10.4 MB | 10.5 MB |

The first runs of this comparison, 2026-12-02, `bench/run.sh 10` (2 rounds; Weft medians ÷ HAProxy's):

| | run A | run B |
| --- | ---: | ---: |
| max req/s | 0.93× (21.4k vs 22.5k) | 0.99× (23.9k vs 24.1k) |
| proxy CPU µs/request | 1.12× (37.9 vs 34.2) | 1.26× (39.1 vs 32.5) |
| added p90 at 1000 req/s | +17.5 vs +5.2 ms (round 2 disturbed by other work: load 8) | +0.272 vs +0.235 ms |
| sidecar RSS, KiB | 10,312 / 10,304 | 10,532 / 10,264 |

The first run with the mutual-TLS paths, 2026-12-02, `ROUNDS=4 bench/run.sh 10`, while other builds
ran on the machine (load 6 at the start; "others" 80–90% of the machine in most fixed-rate runs, up to
34% in the max runs), medians of the per-round ratios:

| | Weft mTLS ÷ HAProxy mTLS | Weft mTLS ÷ nginx mTLS |
| --- | ---: | ---: |
| max req/s | 0.94× (30.1k vs 33.1k; rounds 0.84–0.99) | 0.94× (30.1k vs 32.0k) |
| proxy CPU µs/request | 1.05× (31.7 vs 30.2; rounds 1.02–1.12) | 1.08× (31.7 vs 29.1) |
| CPU µs/request mTLS adds (mTLS − plaintext) | Weft +3.6, HAProxy +9.3 | nginx +7.6 |

The second run with the mutual-TLS paths, at 0846148 on a quiet machine (load 1.8–4), before the
per-request future was halved (see "Where a Weft sidecar's CPU goes"), `ROUNDS=4 bench/run.sh 10`:

| | Weft ÷ HAProxy | Weft mTLS ÷ HAProxy mTLS |
| --- | ---: | ---: |
| max req/s | 0.90× (37.3k vs 41.3k) | 0.94× (33.0k vs 35.6k) |
| proxy CPU µs/request | 1.22× (28.2 vs 23.1) | 1.04× (32.8 vs 31.0) |
| sidecar RSS, KiB | 12,612 / 12,548 | 14,780 / 15,032 |

Two runs on 2026-12-03, `bench/run.sh 8`, medians of the per-round ratios. At 0b728f4 (before
WebSocket tunnels, the DNS proxy and the app-probe status port 15020), on a machine that gave every
process about twice the CPU time per request of the next (direct: 69k req/s); and at bc66f81
(direct: 132k req/s), before CONNECT tunnels and the status port's loopback listener:

| | 0b728f4: Weft ÷ HAProxy | mTLS ÷ mTLS | bc66f81: Weft ÷ HAProxy | mTLS ÷ mTLS |
| --- | ---: | ---: | ---: | ---: |
| max req/s | 0.94× (18.4k vs 19.6k) | 0.98× (15.3k vs 15.6k) | 0.89× (37.2k vs 41.6k) | 0.96× (35.7k vs 37.3k) |
| proxy CPU µs/request | 1.16× (59.8 vs 51.7) | 0.89× (69.2 vs 77.4) | 1.17× (27.7 vs 23.7) | 1.00× (29.7 vs 29.7) |
| sidecar RSS, KiB | 11,260 / 11,420 | 13,060 / 13,528 | 11,980 / 11,964 | 14,068 / 14,008 |

The sidecars' RSS grew by 0.7–1.0 MiB from 0b728f4 to bc66f81, not yet explained (the new code is
not on the benchmark's request path; the status port's listener and a larger binary are the first
suspects). The mTLS CPU ratio is about 1.0× in both later runs; the plaintext one moved from 1.17×
(bc66f81) to the run above's, on a machine that was slower again for every proxy (HAProxy's
plaintext chain 23.7 → 31.2 µs per request), while the code between them adds a method comparison
and an empty-path test per request: to be settled by a run of both commits back to back.

The next run, at c559e94 (CONNECT tunnels) on the slower machine again (HAProxy's plaintext chain
31.2 µs per request), `bench/run.sh 8`: plaintext 0.87× HAProxy's req/s and 1.33× its CPU per
request (41.4 vs 31.2 µs); mTLS 1.07× and 1.01× (43.9 vs 43.4 µs); sidecar RSS 12,168 / 12,188 and
14,248 / 14,244 KiB. The run above, at 842fc43, is the first with Istio's default retry policy on
every outbound route (the request's method, URI and headers kept for a retry: one header-map clone
per request) and the fault filter on every outbound connection manager: 1.21× and 0.97×, on a
faster machine (HAProxy's chain 26.7 µs): 0.89× HAProxy's req/s, 32.4 vs 26.7 µs; mTLS 1.06× and
0.97× (35.0 vs 36.0 µs); sidecar RSS 12,268 / 12,464 and 14,156 / 14,036 KiB. The run above, at
e4f998f, adds per attempt a circuit-breaker permit (two atomic operations and an `Arc` clone held
with the response) and, per request, empty checks for outlier detection, hash policy, mirrors and
the CORS filter now on every outbound connection manager; on a slower machine again (HAProxy's
chain 31.0 µs) plaintext is 1.30× HAProxy's CPU, mTLS unchanged at 0.97×. The plaintext ratio has
moved between 1.17× and 1.33× across these runs with the machine's speed. The run above, at
78dc931 (locality load balancing, local rate limits, response flags; the circuit-breaker permit
skipped for clusters without a request limit), and a run of 89b2385 (before any of issue 11) right
after it on the same machine settle it: HAProxy's plaintext chain 27.7 and 27.4 µs, Weft's 35.7
and 31.6 µs, i.e. 1.29× against 1.15×; mTLS 1.05× against 0.99×. Issue 11 costs the default path
about 4 µs per request over the two sidecars. Callgrind on the client sidecar (c4, 3,000
requests) agrees: 40.8k against 35.4k instructions per request. The extra is spread: futures
grown by the retry state and copied whole (`memcpy` +0.8k per request, mostly where
`serve_connection` creates the request's future and inside `to_cluster`), the copy of method, URI
and headers kept for a retry under Istio's default policy (+0.4k, with its `malloc`/`free` +0.9k),
`send_limited` +0.7k, and header parsing +0.6k for the demo app's new `x-weft-instance` response
header (which every proxy parses). Boxing `to_cluster`'s future made it worse (+0.5k `memcpy`).

The cause was the depth of the request's `async fn` chain, not the work in it. Each level's
future is built on the stack and then copied whole into its caller's (`-Zprint-type-sizes`:
hyper's service block 7.3 KB, `handle` 7.0, `route_and_forward` 6.7, `forward` 6.0,
`to_cluster` 5.4, `send_attempt` 2.5 KB, and each level also holds the request twice, as
argument and as local). The run above, at the commit that flattens it, keeps one await level
between hyper and the attempt: `handle` routes with a plain function and awaits
`policy::forward` only, which prepares the upstream request in a plain function and runs the
attempts. The flags a request collects (`DI`, `URX`) ride a `&mut ResponseFlags` to `handle`
instead of an error-mapping level. Rare, large state is boxed: shadows, formatter request heads,
the upgrade's send. The request's future is now 5.7 KB and callgrind's count 40.3k instructions
per request (`memcpy` 18.5M against 23.4M over the run). Two back-to-back runs against 89b2385,
in both orders, put it level with the commit before issue 11:
- plaintext, Weft ÷ HAProxy CPU per request: 1.19× and 1.25× (this commit) against 1.15× and
  1.26× (89b2385); Weft's own 31.9 and 34.1 µs against 32.4 and 33.3;
- mTLS: 0.99× and 0.97× against 1.01× and 0.94×.
What callgrind still counts over 89b2385 (about 4k instructions per request, under 1 µs over two
sidecars and within the runs' spread) is mostly the method, URI and header-map copy that a retry
under Istio's default policy needs (about 0.9k with its `malloc`s and `free`s: hyper consumes the
request, so a retry cannot reuse it) and the demo app's extra response header.

The run at 33149da (2026-12-04, `bench/run.sh 8`) added Istio's stats filter to every chain (its
settings read per request from the config snapshot: an `Arc` clone and a pointer comparison more
per request), the TCP metadata exchange (opaque TCP only) and Zipkin export (not configured here):
plaintext Weft ÷ HAProxy CPU per request 1.21× (41.5 vs 34.2 µs), mTLS 1.03× (44.0 vs 42.6),
Istio's metrics 1.04× (rounds 1.08 and 0.99), sidecar RSS 15.2 MB plaintext and 16.7–17.0 MB
mTLS. The binary's text is 16.7 MB (10.5 MB before `/config_dump`'s `prost-reflect` renderer and
the OTLP messages); trimming it is open.

The run at f84575e (2026-12-05, `ROUNDS=4 bench/run.sh 8`) added HTTP/2 PING keepalive for the
upstream connections of clusters that set it; the benchmark's clusters do not. Its plaintext Weft
÷ HAProxy CPU per request came out 1.33× (rounds 1.20–1.34), and Istio's metrics 1.16×. In the
same run, mTLS Weft was 1.04× and Weft without metrics 1.14×, both level with 33149da's run, and
mTLS Weft used 2.2 µs *less* per request than plaintext Weft. The run above, a few commits later
and with no change to that path, has plaintext back at 1.21× and the metrics at 1.04×: it was
spread, not a change.

Absolute numbers of the runs before the mTLS paths are not comparable with these: the same direct
path made 58–76k req/s then and 108–134k in the mTLS runs, and each proxy used about half the CPU
per request (the machine or its load differed); compare ratios within a run.

## Where a Weft sidecar's CPU goes (plaintext, 2026-12-02)

Measured on the plaintext chains of this benchmark, one proxy at a time, at c16 max throughput
(`perf trace -s`, `/proc/PID/stat`, `/proc/PID/status`, `perf record`; instructions with
`valgrind --tool=callgrind` over 3000 requests at c4):

| per request, per proxy | Weft | HAProxy |
| --- | ---: | ---: |
| syscalls | 2 `recvfrom` + 2 `writev`, no `EAGAIN` | 2 `recvfrom` + 2 `sendto` |
| `epoll_wait` | 0.07 | 0.06 |
| user CPU µs | 6.4; 5.1 with fat LTO (ec02b8a) | 4.1 |
| system CPU µs | 8.4; 7.5 with fat LTO | 7.4 |
| context switches (voluntary + involuntary) | 0.45 | 0.30 |
| user instructions | 34.5k (36.4k with thin LTO, 39.2k before 0310e73) | — |

- Both do the minimum syscalls a proxy can (one read and one write per direction), so the kernel
  is most of either's cost: on two shared cores, waking the peer on each write and being
  preempted on return from it (`sock_def_readable`, `finish_task_switch`) are the top kernel
  symbols for both. Weft is preempted about twice as often (it runs longer per wake-up), which
  is most of its extra system time.
- Weft's user time is hyper and tokio: the HTTP/1 codecs (~45% of the instructions), the client
  connection task and its request channel (hyper's dispatch `mpsc`/`oneshot`, a task wake-up each
  way), timers (hyper arms a header-read timer per request), `memcpy` of futures and requests
  (~9%), and `malloc`/`free` (~6%: hyper's read buffer is re-allocated per message because the
  parsed headers keep the old one). Weft's own routing, header and policy code is under 10%.
  Tried and dropped: mimalloc as the global allocator (1.4% fewer instructions, 6.6 MB more RSS).
- What the mTLS target asks: with oha, the app and both proxies sharing two cores, max req/s is
  2 cores ÷ (everyone's CPU per request). HAProxy's mTLS chain used 31–33 µs and everything else
  ~25 µs, so ≥ 1.25× its req/s needs Weft's two mTLS proxies under ~20 µs per request together:
  ~10 µs each. System time alone is 7.4–8.4 µs per request for either proxy here, which
  leaves about 2 µs for all the user-space work of a proxy, TLS included, where HAProxy's own
  plaintext user time is 4.1 µs. The target is not reachable on this topology by making Weft's
  own code cheaper; the CPU target (≤ 1× HAProxy's per request) is, and is met in the run above.
EOF2
