// Summarises bench/results/*.json (written by bench/run.sh) into
// docs/benchmarks-results.md and, with gnuplot, docs/bench/*.png.
// Usage: node bench/report.js RESULTS_DIR DOCS_DIR
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const [dir, docs] = process.argv.slice(2);
const load = (re) =>
  fs.readdirSync(dir).filter((f) => re.test(f)).sort().map((f) => JSON.parse(fs.readFileSync(path.join(dir, f))));
const median = (xs) => {
  const s = xs.filter((x) => x !== undefined && x !== null).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '–');
const n = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
const out = [];
const when = new Date().toISOString().slice(0, 10);
out.push('# Benchmark results (generated)', '');
out.push(`Written by \`make bench\` (bench/run.sh, then bench/report.js) on ${when}; medians over the runs in`);
out.push('bench/results/. The machine, method and analysis are in [benchmarks.md](benchmarks.md).', '');

// ---- steady sweeps: the standard one, and the paced one (each send at its due time)
const steadyTable = (runs, title) => {
  const rates = [...new Set(runs.flatMap((r) => r.rounds.map((x) => x.offered_rate)))].sort((a, b) => a - b);
  out.push(`## ${title}, ${runs[0].users} users, ${runs[0].body_bytes}-byte bodies, fsync on (${runs.length} runs)`, '');
  out.push('| offered | achieved | ack p50 | ack p99 | e2e p50 | e2e p90 | e2e p99 | e2e p99.9 | e2e p99 per 0.25 s: median, worst | server CPU / msg | of which committer, network threads | server context switches / msg: slept + preempted | load generator CPU / msg | audit |');
  out.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  const thread = (x, name) => (x.server_cpu_us_per_msg_by_thread || {})[name] || 0;
  const windows = (x) => x.e2e_p99_by_window_ms || [];
  const switches = (x, kind) => (x.server_context_switches_per_msg || {})[kind];
  const dat = [];
  for (const rate of rates) {
    const rs = runs.map((r) => r.rounds.find((x) => x.offered_rate === rate)).filter(Boolean);
    const m = (g) => median(rs.map(g));
    const pass = rs.filter((x) => x.audit_pass).length;
    out.push(`| ${n(rate)}/s | ${n(m((x) => x.achieved_rate))}/s | ${f(m((x) => x.ack_latency.p50_ms))} ms | ${f(m((x) => x.ack_latency.p99_ms))} ms | ` +
      `${f(m((x) => x.e2e_latency.p50_ms))} ms | ${f(m((x) => x.e2e_latency.p90_ms))} ms | ${f(m((x) => x.e2e_latency.p99_ms))} ms | ` +
      `${f(m((x) => x.e2e_latency.p999_ms))} ms | ` +
      `${f(m((x) => median(windows(x))))}, ${f(m((x) => Math.max(...windows(x))))} ms | ${f(m((x) => x.server_cpu_us_per_msg), 1)} µs | ` +
      `${f(m((x) => thread(x, 'pg-commit')), 1)} + ${f(m((x) => thread(x, 'pg-net')), 1)} µs | ` +
      `${f(m((x) => switches(x, 'voluntary')))} + ${f(m((x) => switches(x, 'involuntary')))} | ` +
      `${f(m((x) => x.load_generator_cpu_us_per_msg), 1)} µs | ${pass}/${rs.length} PASS |`);
    dat.push([rate, m((x) => x.e2e_latency.p50_ms), m((x) => x.e2e_latency.p90_ms), m((x) => x.e2e_latency.p99_ms),
      m((x) => x.e2e_latency.p999_ms), m((x) => x.server_cpu_us_per_msg)].join(' '));
  }
  return dat;
};
const steady = load(/^steady-\d+\.json$/);
if (steady.length) {
  const dat = steadyTable(steady, 'Steady 1:1 traffic');
  const best = median(steady.map((r) => r.highest_rate_p99_under_50ms));
  out.push('', `Highest offered rate with e2e p99 under 50 ms, audited (median): **${n(best)} msg/s**.`, '');
  fs.writeFileSync(path.join(dir, 'sweep.dat'), dat.join('\n') + '\n');
  // The e2e histogram of each rate, from the first run.
  const hist = [];
  for (const x of steady[0].rounds) {
    hist.push(`${x.offered_rate}/s 0`);
    for (const [ms, c] of x.e2e_histogram) hist.push(`${ms} ${c / Math.max(1, x.e2e_latency.count)}`);
    hist.push('', '');
  }
  fs.writeFileSync(path.join(dir, 'hist.dat'), hist.join('\n'));
  out.push('![latency percentiles against offered rate](bench/latency-vs-rate.png)', '');
  out.push('![end-to-end latency histograms](bench/latency-histogram.png)', '');
}
// ---- the CPU line's peers, each run right after each steady sweep under the same load:
// uWebSockets (pigeon-bench --uws), the budget's own peer, and the bare reference relay
// (pigeon-bench --relay). Ratios are taken run by run, then the median.
const peerTable = (runs, title, intro) => {
  out.push(`## ${title} (${runs.length} runs)`, '', ...intro, '');
  out.push('| offered | pigeond CPU / msg | peer CPU / msg | pigeond / peer: median (each run) | peer e2e p50, p99 | peer audit |');
  out.push('|---|---|---|---|---|---|');
  const rates = [...new Set(runs.flatMap((r) => r.rounds.map((x) => x.offered_rate)))].sort((a, b) => a - b);
  for (const rate of rates) {
    const at = (r) => r.rounds.find((x) => x.offered_rate === rate);
    const rr = runs.map(at).filter(Boolean);
    const ratios = [];
    runs.forEach((r, i) => {
      const p = steady[i] && at(steady[i]), q = at(r);
      if (p && q && q.server_cpu_us_per_msg > 0) ratios.push(p.server_cpu_us_per_msg / q.server_cpu_us_per_msg);
    });
    const pm = median(steady.map(at).filter(Boolean).map((x) => x.server_cpu_us_per_msg));
    out.push(`| ${n(rate)}/s | ${f(pm, 1)} µs | ${f(median(rr.map((x) => x.server_cpu_us_per_msg)), 1)} µs | ` +
      `**${f(median(ratios))}** (${ratios.map((x) => f(x)).join(', ')}) | ` +
      `${f(median(rr.map((x) => x.e2e_latency.p50_ms)))}, ${f(median(rr.map((x) => x.e2e_latency.p99_ms)))} ms | ` +
      `${rr.filter((x) => x.audit_pass).length}/${rr.length} PASS |`);
  }
  out.push('');
};
const uws = load(/^uws-\d+\.json$/);
if (steady.length && uws.length)
  peerTable(uws, 'The CPU line\'s peer: uWebSockets under the same load', [
    '`pigeon-bench --uws` (tools/uws_relay): uWebSockets through its Node binding (uWS.js v20), non-durable, relaying',
    'as a Node app on it would (JSON.parse of each frame, JSON.stringify of each frame sent), run right after each steady',
    'sweep. The budget\'s CPU line is uWebSockets\' figure from a reference day (34 µs per message at 5,000/s): pigeond',
    'meets it when its CPU per message is at most uWebSockets\' in the same run, a ratio of at most 1.00, at 5,000/s and',
    'at 10,000/s.']);
const relay = load(/^relay-\d+\.json$/);
if (steady.length && relay.length)
  peerTable(relay, 'The floor: the bare reference relay under the same load', [
    '`pigeon-bench --relay` (tools/reference_relay.h): bare, non-durable, one thread, no JSON, run right after each steady',
    'sweep: what relaying costs on this host in the hour of the run. On the reference day a bare relay spent 17-21 µs per',
    'message and uWebSockets 34 µs (../shared/STACK.md, issue 5), a ratio of 1.6-2.0.']);

const paced = load(/^paced-\d+\.json$/);
if (paced.length) {
  steadyTable(paced, 'Paced steady traffic (`steady --pace`: each send at its due time)');
  out.push('', 'Without `--pace` a load process sends what is due whenever it wakes (on a frame from the server, or after',
    '1 ms), so its sends bunch up right after each commit\'s acks. Paced, they arrive evenly, as from independent',
    'devices: the server makes smaller batches (its commit delay starts during the previous commit) and wakes more',
    'often, and the load processes take about twice the CPU. benchmarks.md explains it.', '');
}

// ---- burst
const burst = load(/^burst-\d+\.json$/);
if (burst.length) {
  const rs = burst.map((r) => r.rounds[0]);
  const m = (g) => median(rs.map(g));
  out.push(`## Burst: every one of ${burst[0].users} users sends ${rs[0].burst_per_user} messages at once (${burst.length} runs)`, '');
  out.push('| messages | drained at | e2e p50 | e2e p99 | e2e max | server CPU / msg | audit |', '|---|---|---|---|---|---|---|');
  out.push(`| ${n(m((x) => x.sent))} | ${n(m((x) => x.achieved_rate))}/s | ${f(m((x) => x.e2e_latency.p50_ms))} ms | ${f(m((x) => x.e2e_latency.p99_ms))} ms | ` +
    `${f(m((x) => x.e2e_latency.max_ms))} ms | ${f(m((x) => x.server_cpu_us_per_msg), 1)} µs | ${rs.filter((x) => x.audit_pass).length}/${rs.length} PASS |`, '');
}

// ---- catch-up, storm, idle, restart
const catchup = load(/^catchup-\d+\.json$/);
if (catchup.length) {
  out.push(`## Catch-up (${catchup.length} runs)`, '');
  out.push(`An offline device pulls ${n(catchup[0].pending)} pending messages with the feed API in ` +
    `**${f(median(catchup.map((r) => r.seconds)), 3)} s** (runs: ${catchup.map((r) => f(r.seconds, 3)).join(', ')} s; budget 1 s); ` +
    `audit ${catchup.filter((r) => r.audit_pass).length}/${catchup.length} PASS.`, '');
}
const storm = load(/^storm-\d+\.json$/);
if (storm.length) {
  out.push(`## Reconnect storm (${storm.length} runs)`, '');
  // live_during_storm: a connected pair's messages while the storm runs (since the twenty-second round).
  const live = storm.filter((r) => r.live_during_storm);
  const liveP99 = live.length ? `${f(median(live.map((r) => r.live_during_storm.p99_ms)))} ms` : '–';
  out.push('| devices | messages replayed each | all upgraded (p99) | all caught up (max) | live messages meanwhile (p99) | server CPU | audit |', '|---|---|---|---|---|---|---|');
  out.push(`| ${n(storm[0].devices)} | ${storm[0].messages_per_device} | ${f(median(storm.map((r) => r.upgraded.p99_ms)))} ms | ` +
    `${f(median(storm.map((r) => r.replayed.max_ms)))} ms | ${liveP99} | ${f(median(storm.map((r) => r.server_cpu_s)))} s | ` +
    `${storm.filter((r) => r.audit_pass).length}/${storm.length} PASS |`, '');
}
const idle = load(/^idle-\d+\.json$/);
if (idle.length) {
  const u = median(idle.map((r) => r.user_bytes_per_socket));
  const k = median(idle.map((r) => r.kernel_slab_bytes_per_pair));
  out.push(`## Idle connections (${idle.length} runs)`, '');
  out.push(`${n(idle[0].sockets)} authenticated idle WebSockets from ${idle[0].procs} processes: **${n(u)} bytes** of pigeond ` +
    `user space per socket (runs: ${idle.map((r) => n(r.user_bytes_per_socket)).join(', ')}; budget 1,024)` +
    (idle[0].user_bytes_per_socket_marginal !== undefined
      ? `, ${n(median(idle.map((r) => r.user_bytes_per_socket_marginal)))} bytes marginal (the second half of the sockets), `
      : ', ') +
    `${n(k)} bytes of kernel slab per loopback pair. ` +
    `Projected for 1,000,000 sockets: ${f(u * 1e6 / 1e9)} GB user space + ${f(k / 2 * 1e6 / 1e9)} GB kernel (half of each pair).`, '');
}
const restart = load(/^restart\.json$/);
if (restart.length) {
  const r = restart[0];
  out.push('## Restart after SIGKILL', '');
  out.push(`${n(r.messages)} messages stored (more with each run), SIGKILL under no load, restart: /readyz answers in ` +
    `${r.ready_seconds.map((x) => f(x, 3) + ' s').join(', ')} (median **${f(r.median_s, 3)} s**; budget 2 s); audit ${r.audit_pass ? 'PASS' : 'FAIL'}.`, '');
}

// ---- microbenchmarks
const micro = load(/^micro\.json$/);
if (micro.length) {
  out.push('## Microbenchmarks (Google Benchmark)', '');
  out.push('| benchmark | real time | CPU time | items/s |', '|---|---|---|---|');
  // Google Benchmark reports times in each benchmark's own unit.
  const us = (b, t) => t * ({ns: 1e-3, us: 1, ms: 1e3, s: 1e6}[b.time_unit] ?? 1e-3);
  for (const b of micro[0].benchmarks)
    out.push(`| \`${b.name}\` | ${f(us(b, b.real_time), 2)} µs | ${f(us(b, b.cpu_time), 2)} µs | ${b.items_per_second ? n(b.items_per_second) : '–'} |`);
  out.push('');
}
fs.writeFileSync(path.join(docs, 'benchmarks-results.md'), out.join('\n'));

// ---- plots
if (steady.length) {
  const gp = `
set terminal pngcairo size 900,540 font ",10"
set output "${docs}/bench/latency-vs-rate.png"
set title "pigeond, durable 1:1 messages (fsync on), ${steady[0].users} users: end-to-end latency"
set xlabel "offered rate (messages/s)"; set ylabel "latency (ms)"; set logscale y; set grid
set key top left
set y2label "server CPU per message (µs)"; set y2tics; set ytics nomirror; set y2range [0:*]
plot "${dir}/sweep.dat" u 1:2 w lp t "p50", "" u 1:3 w lp t "p90", "" u 1:4 w lp t "p99", "" u 1:5 w lp t "p99.9", \\
     "" u 1:6 axes x1y2 w lp dt 2 t "server CPU / msg (right)", 50 w l lc rgb "red" dt 3 t "50 ms"
set output "${docs}/bench/latency-histogram.png"
unset y2label; unset y2tics; set ytics mirror
set title "end-to-end latency distribution per offered rate (first run)"
set xlabel "latency (ms)"; set ylabel "fraction of messages per bucket"; set logscale x; unset logscale y
set key top right
plot for [i=0:${steady[0].rounds.length - 1}] "${dir}/hist.dat" index i u 1:2 w l t columnheader(1)
`;
  try {
    execFileSync('gnuplot', [], { input: gp });
  } catch (e) {
    console.error('gnuplot failed or is missing: no plots (' + e.message + ')');
  }
}
console.log(`wrote ${docs}/benchmarks-results.md`);
