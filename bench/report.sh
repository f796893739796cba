#!/usr/bin/env bash
# Renders bench/RESULTS.md from the raw numbers bench/run.sh saved (default: bench/last-run/).
# Usage: bench/report.sh [DIR] > bench/RESULTS.md
set -euo pipefail
dir=${1:-$(cd "$(dirname "$0")" && pwd)/last-run}
for f in results.tsv procs.tsv rss.tsv meta.env; do [ -f "$dir/$f" ] || { echo "report: missing $dir/$f" >&2; exit 1; }; done
meta() { sed -n "s/^$1=//p" "$dir/meta.env"; }
secs=$(meta secs); rounds=$(meta rounds)
rss_target_kib=10240

cat <<EOF
# Benchmark results: Weft vs HAProxy vs nginx

Produced by \`$(meta invocation)\` on $(meta date) (git HEAD $(meta commit) at run time;
release binaries built $(meta built));
the tables below are generated from \`bench/last-run/*.tsv\` by \`bench/report.sh\`.

## What was measured, and how

Four paths on loopback (127.0.20.0/24) to the same upstream, \`weftctl demo-app\` (hyper, one
process, tokio's default thread count):

| path | chain |
| --- | --- |
| direct | oha → demo-app |
| Weft | oha → client sidecar :15001 → server sidecar :15006 → demo-app (xDS config from weft-controller) |
| HAProxy | oha → haproxy A → haproxy B → demo-app |
| nginx | oha → nginx A → nginx B → demo-app |

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
- **TCP closed**: net growth of the TIME-WAIT sockets of 127.0.20.0/24 over the max run (0 if
  they shrank), i.e. roughly the connections closed during it. Older ones expiring after 60 s
  offset it, so 0 to a few dozen all mean "connections kept alive" (oha's own 16 close at its
  end); a hop that opened a connection per request would show thousands.
- **RSS**: \`VmRSS\` of each proxy process after all runs.
- **Others**: CPU that processes outside the benchmark used during a run (machine-wide
  user+system ticks from \`/proc/stat\` minus the chain's, the app's and oha's), as a % of the
  machine: a noise gauge, since the machine is shared. Everything measured (app, proxies, oha)
  ran at nice $(meta nice), to be disturbed less by that other work.
- $rounds rounds; round 1 runs direct, Weft, HAProxy, nginx; round 2 the reverse order (and so
  on alternately). Medians are over rounds (with 2 rounds, the mean of the two).
EOF

awk -F'\t' -v rounds="$rounds" -v rss_target="$rss_target_kib" '
function fmt(v, d) { return (v == "" || v == "-") ? "—" : sprintf("%." d "f", v) }
function thou(v,   s, neg, out) {
  if (v == "" || v == "-") return "—"
  s = sprintf("%.0f", v); neg = (s ~ /^-/); if (neg) s = substr(s, 2); out = ""
  while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
  return (neg ? "-" : "") s out
}
# median / best of x[1..n]
function median(x, n,   i, j, t) {
  for (i = 2; i <= n; i++) { t = x[i]; for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]; x[j + 1] = t }
  return (n % 2) ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
}
function collect(p, m,   r, n) { delete tmp; n = 0; for (r = 1; r <= rounds; r++) if ((p, m, r) in v && v[p, m, r] != "-") tmp[++n] = v[p, m, r] + 0; return n }
function med(p, m,   n) { n = collect(p, m); return n ? median(tmp, n) : "-" }
function best(p, m, want_hi,   n, i, b) { n = collect(p, m); if (!n) return "-"; b = tmp[1]; for (i = 2; i <= n; i++) if (want_hi ? tmp[i] > b : tmp[i] < b) b = tmp[i]; return b }
function sum(p, m,   n, i, s) { n = collect(p, m); s = 0; for (i = 1; i <= n; i++) s += tmp[i]; return s }
function hi(p, m,   n, i, b) { n = collect(p, m); b = tmp[1]; for (i = 2; i <= n; i++) if (tmp[i] > b) b = tmp[i]; return b }
function lo(p, m,   n, i, b) { n = collect(p, m); b = tmp[1]; for (i = 2; i <= n; i++) if (tmp[i] < b) b = tmp[i]; return b }
function row(label, a, b, c, d) { printf "| %s | %s | %s | %s | %s |\n", label, a, b, c, d }
function hops(p, r,   i, s) { s = ""; for (i = 1; i <= nproc[p]; i++) s = s (i > 1 ? " / " : "") fmt(pc[p, proc[p, i], r], 1); return s }
function hopsmed(p,   i, s, n, r) {
  s = ""
  for (i = 1; i <= nproc[p]; i++) { delete tmp; n = 0; for (r = 1; r <= rounds; r++) if ((p, proc[p, i], r) in pc) tmp[++n] = pc[p, proc[p, i], r] + 0
    s = s (i > 1 ? " / " : "") (n ? fmt(median(tmp, n), 1) : "—") }
  return s
}
FNR == 1 { file++; if (file == 1) for (i = 1; i <= NF; i++) col[$i] = i; next }
file == 1 {
  p = $2; r = $1
  for (m in col) v[p, m, r] = $col[m]
  seen[p] = 1
}
file == 2 { if (!(($2, $3) in hasproc)) { hasproc[$2, $3] = 1; proc[$2, ++nproc[$2]] = $3 }; pc[$2, $3, $1] = $4 }
file == 3 { rss[$1, $2] = $3; hwm[$1, $2] = $4 }
END {
  P[1] = "direct"; P[2] = "weft"; P[3] = "haproxy"; P[4] = "nginx"
  name["direct"] = "direct"; name["weft"] = "Weft (2 sidecars)"; name["haproxy"] = "HAProxy ×2"; name["nginx"] = "nginx ×2"
  for (r = 1; r <= rounds; r++) for (k = 1; k <= 4; k++) {
    p = P[k]; if (p == "direct") v[p, "added_p90", r] = "-"
    else if ((p, "p90_ms", r) in v) v[p, "added_p90", r] = v[p, "p90_ms", r] - v["direct", "p90_ms", r]
  }

  print ""
  print "## Side by side"
  print ""
  printf "Median of %d rounds; [best round] where it matters. Latencies in ms.\n\n", rounds
  row("", name[P[1]], name[P[2]], name[P[3]], name[P[4]])
  print "| --- | ---: | ---: | ---: | ---: |"
  for (k = 1; k <= 4; k++) { p = P[k]; c[k] = thou(med(p, "max_rps")) " [" thou(best(p, "max_rps", 1)) "]" }
  row("**max req/s**, 16 connections", c[1], c[2], c[3], c[4])
  for (k = 1; k <= 4; k++) { p = P[k]; c[k] = thou(sum(p, "max_bad")) }
  row("failed requests in the max runs (all rounds)", c[1], c[2], c[3], c[4])
  for (k = 1; k <= 4; k++) { p = P[k]; c[k] = (p == "direct") ? "—" : fmt(med(p, "proxy_cpu_us"), 1) " [" fmt(best(p, "proxy_cpu_us", 0), 1) "]" }
  row("**proxy CPU µs/request**, both proxies", c[1], c[2], c[3], c[4])
  for (k = 1; k <= 4; k++) { p = P[k]; c[k] = (p == "direct") ? "—" : hopsmed(p) }
  row("… per proxy (first hop / second hop)", c[1], c[2], c[3], c[4])
  for (k = 1; k <= 4; k++) { p = P[k]; c[k] = fmt(med(p, "app_cpu_us"), 1) }
  row("app CPU µs/request", c[1], c[2], c[3], c[4])
  for (k = 1; k <= 4; k++) { p = P[k]; c[k] = thou(hi(p, "tcp_closed")) }
  row("TCP connections closed during a max run (highest round)", c[1], c[2], c[3], c[4])
  for (q = 50; q <= 99; q += (q == 50 ? 40 : 9)) {
    for (k = 1; k <= 4; k++) { p = P[k]; c[k] = fmt(med(p, "p" q "_ms"), 3) }
    row((q == 90 ? "**p90**" : "p" q) " at 1000 req/s, POST 1 KiB", c[1], c[2], c[3], c[4])
  }
  for (k = 1; k <= 4; k++) { p = P[k]; c[k] = (p == "direct") ? "—" : "+" fmt(med(p, "added_p90"), 3) }
  row("**added p90** (path − direct, same round)", c[1], c[2], c[3], c[4])
  for (k = 1; k <= 4; k++) { p = P[k]; c[k] = fmt(lo(p, "fixed_rps"), 1) " / " thou(sum(p, "fixed_bad")) }
  row("fixed-rate runs: lowest achieved req/s / failed", c[1], c[2], c[3], c[4])
  for (k = 1; k <= 4; k++) { p = P[k]; c[k] = fmt(hi(p, "max_others_pct"), 0) "% / " fmt(hi(p, "fixed_others_pct"), 0) "%" }
  row("other processes’ CPU, max / fixed runs (highest round), % of machine", c[1], c[2], c[3], c[4])
  for (k = 1; k <= 4; k++) {
    p = P[k]; c[k] = "—"
    if (p != "direct") { c[k] = ""; for (i = 1; i <= nproc[p]; i++) c[k] = c[k] (i > 1 ? " / " : "") thou(rss[p, proc[p, i]]) }
  }
  row("**RSS** after the runs, KiB (first / second hop)", c[1], c[2], c[3], c[4])
  for (k = 1; k <= 4; k++) {
    p = P[k]; c[k] = "—"
    if (p != "direct") { c[k] = ""; for (i = 1; i <= nproc[p]; i++) c[k] = c[k] (i > 1 ? " / " : "") thou(hwm[p, proc[p, i]]) }
  }
  row("peak RSS (VmHWM), KiB", c[1], c[2], c[3], c[4])

  print ""
  print "## Ratios"
  print ""
  printf "Weft against each two-hop chain, per round (the paths of a round ran back to back) and the median of the rounds.\n\n"
  hdr = "| |"; sep = "| --- |"
  for (r = 1; r <= rounds; r++) { hdr = hdr " round " r " |"; sep = sep " ---: |" }
  print hdr " median |"; print sep " ---: |"
  split("haproxy nginx", O, " "); short["haproxy"] = "HAProxy"; short["nginx"] = "nginx"
  for (o = 1; o <= 2; o++) ratio_row("Weft max req/s ÷ " short[O[o]] "’s", "max_rps", O[o], "x")
  for (o = 1; o <= 2; o++) ratio_row("Weft CPU µs/request ÷ " short[O[o]] "’s", "proxy_cpu_us", O[o], "x")
  for (o = 1; o <= 2; o++) ratio_row("Weft added p90 − " short[O[o]] "’s added p90, ms", "added_p90", O[o], "d")
  for (o = 1; o <= 2; o++) ratio_row("Weft added p90 ÷ " short[O[o]] "’s added p90", "added_p90", O[o], "x")

  print ""
  print "## Targets"
  print ""
  print "| target | measured (median) | rounds met | verdict |"
  print "| --- | --- | ---: | --- |"
  target("Weft max req/s ≥ 1.0× HAProxy’s", "max_rps", ">=",
         sprintf("%s vs %s req/s = %.2f×", thou(med("weft", "max_rps")), thou(med("haproxy", "max_rps")), rmed["max_rps", "haproxy", "x"]))
  target("Weft CPU µs/request ≤ HAProxy’s", "proxy_cpu_us", "<=",
         sprintf("%.1f vs %.1f µs = %.2f×", med("weft", "proxy_cpu_us"), med("haproxy", "proxy_cpu_us"), rmed["proxy_cpu_us", "haproxy", "x"]))
  target("Weft added p90 at 1000 req/s ≤ HAProxy’s", "added_p90", "<=",
         sprintf("+%.3f vs +%.3f ms", med("weft", "added_p90"), med("haproxy", "added_p90")))
  worst = 0; wl = ""
  for (i = 1; i <= nproc["weft"]; i++) { n = proc["weft", i]; wl = wl (i > 1 ? ", " : "") n " " thou(rss["weft", n]); if (rss["weft", n] + 0 > worst) worst = rss["weft", n] + 0 }
  edge = (worst - rss_target) / rss_target; if (edge < 0) edge = -edge
  printf "| RSS ≤ 10 MiB (%s KiB) per sidecar | %s KiB | — | %s%s |\n", thou(rss_target), wl, (worst <= rss_target) ? "**met**" : "**not met**",
    (edge < 0.03) ? " (on the edge: within 3% of the limit)" : ""

  print ""
  print "## Every run"
  print ""
  print "Max run: requests/s, failed requests, CPU, TCP connections closed, and the CPU other processes on the machine"
  print "used meanwhile (“others”, % of the machine). Fixed run (1000 req/s, POST 1 KiB): latencies in ms,"
  print "achieved rate, failed requests, others."
  print ""
  print "| round | path | max req/s | failed | proxy CPU µs/req (per proxy) | app CPU µs/req | TCP closed | others | p50 | p90 | p99 | added p90 | req/s | failed | others |"
  print "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for (r = 1; r <= rounds; r++) {
    for (k = 1; k <= 4; k++) {
      p = (r % 2) ? P[k] : P[5 - k]
      if (!((p, "max_rps", r) in v)) continue
      cpu = (p == "direct") ? "—" : fmt(v[p, "proxy_cpu_us", r], 1) " (" hops(p, r) ")"
      printf "| %d | %s | %s | %s | %s | %s | %s | %s%% | %s | %s | %s | %s | %s | %s | %s%% |\n", r, name[p], thou(v[p, "max_rps", r]), thou(v[p, "max_bad", r]),
        cpu, fmt(v[p, "app_cpu_us", r], 1), thou(v[p, "tcp_closed", r]), fmt(v[p, "max_others_pct", r], 0),
        fmt(v[p, "p50_ms", r], 3), fmt(v[p, "p90_ms", r], 3), fmt(v[p, "p99_ms", r], 3),
        (p == "direct") ? "—" : "+" fmt(v[p, "added_p90", r], 3), fmt(v[p, "fixed_rps", r], 1), thou(v[p, "fixed_bad", r]), fmt(v[p, "fixed_others_pct", r], 0)
    }
  }
}
function rval(m, o, kind, r,   a, b) {
  a = v["weft", m, r] + 0; b = v[o, m, r] + 0
  if (kind == "d") return a - b
  return (b == 0) ? "" : a / b
}
function ratio_row(label, m, o, kind,   r, s, n, x, line) {
  line = "| " label " |"; n = 0; delete rr
  for (r = 1; r <= rounds; r++) { x = rval(m, o, kind, r); if (x != "") rr[++n] = x; line = line " " (x == "" ? "—" : (kind == "d" ? sprintf("%+.3f", x) : sprintf("%.2f", x))) " |" }
  rmed[m, o, kind] = n ? median(rr, n) : ""
  print line " " (n ? (kind == "d" ? sprintf("%+.3f", rmed[m, o, kind]) : sprintf("%.2f", rmed[m, o, kind])) : "—") " |"
}
# target: Weft vs HAProxy, per round and on the medians.
function target(label, m, op, measured,   r, k, a, b, ok) {
  k = 0
  for (r = 1; r <= rounds; r++) { a = v["weft", m, r] + 0; b = v["haproxy", m, r] + 0; if (op == ">=" ? a >= b : a <= b) k++ }
  a = med("weft", m) + 0; b = med("haproxy", m) + 0; ok = (op == ">=") ? a >= b : a <= b
  printf "| %s | %s | %d of %d | %s |\n", label, measured, k, rounds, ok ? "**met**" : "**not met**"
}
' "$dir/results.tsv" "$dir/procs.tsv" "$dir/rss.tsv"

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
- Weft's client → server sidecar hop is plaintext HTTP/1.1 like the other two chains (no
  mTLS yet); Weft also routes by xDS config (virtual host by `Host`, route, cluster, endpoint)
  and adds `x-request-id`, while the HAProxy and nginx chains forward to one fixed upstream.

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
EOF2
