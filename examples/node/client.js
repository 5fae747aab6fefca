#!/usr/bin/env node
// A TopDeck-style caller of resilienced in Node, and a runnable check of the
// API. The proto files of ../../proto are loaded at runtime with
// @grpc/proto-loader (no generated code); the google/protobuf well-known
// types (Duration, Timestamp) come with protobufjs.
//
// It guards calls to a fake upstream (a tiny HTTP server on 127.0.0.1) the
// way TopDeck guards its Azure DevOps calls: Acquire (inline rate limit and a
// breaker) before the call, ReportOutcome (with permit_id and
// breaker_generation) after it, and the shared cache for JSON values. Every
// RPC carries an x-correlation-id, which the server must echo.
//
//   (cd examples/node && npm ci)
//   node examples/node/client.js [HOST:PORT]
//
// The address comes from the argument, else $TOPDECK_RESILIENCE_ADDR, else
// localhost:50051. Exit status: 0 when every check held, 1 with a message
// when one did not, 3 when the packages are missing.
//
// Names (bucket, breaker, cache key) are unique per run, so it can run again
// and again against a long-lived server. The half-open probe is checked when
// the breaker policy's recovery_timeout is at most 5s; otherwise the breaker
// is closed with ResetBreaker instead.
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');
const path = require('node:path');

let grpc, protoLoader;
try {
  grpc = require('@grpc/grpc-js');
  protoLoader = require('@grpc/proto-loader');
} catch (e) {
  console.error(`node client: ${e.message.split('\n')[0]}: run examples/install-deps.sh (npm ci in examples/node)`);
  process.exit(3);
}

const PROTO_DIR = path.resolve(__dirname, '..', '..', 'proto');
const RPC_TIMEOUT_MS = 5000;
const MAX_PROBE_WAIT_S = 5;

class CheckFailed extends Error {}

function expect(cond, what) {
  if (!cond) throw new CheckFailed(what);
}

// Durations travel as {seconds: string (longs: String), nanos: number}.
const duration = (s) => ({ seconds: String(Math.trunc(s)), nanos: Math.round((s % 1) * 1e9) });
const seconds = (d) => (d ? Number(d.seconds) + d.nanos / 1e9 : 0);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function loadApi() {
  const def = protoLoader.loadSync(
    ['topdeck/resilience/v1/resilience.proto', 'topdeck/resilience/v1/cache.proto'],
    {
      includeDirs: [PROTO_DIR], // google/protobuf/*.proto resolve to protobufjs's bundled copies
      keepCase: true, // field names as in the .proto files
      longs: String, // int64/uint64 as decimal strings: no precision loss
      enums: String, // enum values by name
      defaults: true, // unset fields as their zero values
    },
  );
  return grpc.loadPackageDefinition(def).topdeck.resilience.v1;
}

// Resilience calls resilienced with an x-correlation-id on every RPC and
// checks that the server echoes it in the response headers.
class Resilience {
  constructor(addr, runId) {
    const v1 = loadApi();
    const creds = grpc.credentials.createInsecure();
    this.rs = new v1.ResilienceService(addr, creds);
    this.cache = new v1.CacheService(addr, creds, { channelOverride: this.rs.getChannel() });
    this.runId = runId;
    this.n = 0;
  }

  call(client, name, request) {
    this.n++;
    const cid = `polyglot-node-${this.runId}-${this.n}`;
    const md = new grpc.Metadata();
    md.set('x-correlation-id', cid);
    return new Promise((resolve, reject) => {
      let header;
      const call = client[name](request, md, { deadline: Date.now() + RPC_TIMEOUT_MS }, (err, resp) => {
        if (err) return reject(new CheckFailed(`${name}: ${grpc.status[err.code]}: ${err.details}`));
        const got = header && header.get('x-correlation-id')[0];
        if (got !== cid) return reject(new CheckFailed(`${name}: x-correlation-id header: got ${got}, want ${cid}`));
        resolve(resp);
      });
      call.on('metadata', (m) => { header = m; });
    });
  }

  close() {
    this.rs.close();
    this.cache.close();
  }
}

// FakeUpstream is a tiny HTTP server on 127.0.0.1 that answers 200 with JSON
// or 503.
class FakeUpstream {
  constructor() {
    this.healthy = true;
    this.hits = 0;
    this.server = http.createServer((req, res) => {
      this.hits++;
      const [status, body] = this.healthy
        ? [200, { org: 'org-42', projects: ['alpha', 'beta'], count: 2 }]
        : [503, { error: 'service unavailable' }];
      res.writeHead(status, { 'Content-Type': 'application/json', Connection: 'close' });
      res.end(JSON.stringify(body));
    });
  }

  listen() {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => {
      this.url = `http://127.0.0.1:${this.server.address().port}/_apis/projects`;
      resolve();
    }));
  }

  // get GETs the upstream: {status, body (parsed JSON)}.
  async get() {
    const res = await fetch(this.url, { signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: await res.json() };
  }

  close() {
    return new Promise((resolve) => this.server.close(resolve));
  }
}

// GuardedCaller is what TopDeck does around every outgoing call: acquire,
// call, report.
class GuardedCaller {
  constructor(api, key, limit, breaker) {
    Object.assign(this, { api, key, limit, breaker });
  }

  acquire() {
    return this.api.call(this.api.rs, 'Acquire', { key: this.key, limit: this.limit, breaker: this.breaker });
  }

  report(acq, ok, latencySeconds) {
    return this.api.call(this.api.rs, 'ReportOutcome', {
      breaker: this.breaker,
      outcome: ok ? 'OUTCOME_SUCCESS' : 'OUTCOME_FAILURE',
      latency: duration(latencySeconds),
      permit_id: acq.permit_id,
      breaker_generation: acq.breaker_generation,
    });
  }

  // call runs fn() if admitted: {acq, result (fn's, or null), rep (or null)}.
  async call(fn) {
    const acq = await this.acquire();
    if (!acq.allowed) return { acq, result: null, rep: null };
    const start = process.hrtime.bigint();
    const result = await fn();
    const rep = await this.report(acq, result.status >= 200 && result.status < 300,
      Number(process.hrtime.bigint() - start) / 1e9);
    return { acq, result, rep };
  }
}

async function checks(api, upstream, runId) {
  const breaker = `polyglot-node-${runId}`;
  const guarded = new GuardedCaller(api, `polyglot/node/${runId}`,
    { max_calls: '100', time_window: duration(60) }, breaker);
  const cacheKey = `polyglot/node/${runId}/projects`;
  const get = () => upstream.get();

  // 1. Cache miss, then a guarded call whose JSON result is cached.
  let got = await api.call(api.cache, 'Get', { key: cacheKey });
  expect(!got.found && !got.degraded, `Get of a new key: got found=${got.found} degraded=${got.degraded}, want a plain miss`);

  let { acq, result, rep } = await guarded.call(get);
  expect(acq.allowed && acq.reason === 'ACQUIRE_REASON_ALLOWED', `first Acquire: got allowed=${acq.allowed} reason=${acq.reason}, want allowed`);
  expect(acq.breaker_state === 'CIRCUIT_STATE_CLOSED', `first Acquire breaker_state: got ${acq.breaker_state}, want CLOSED`);
  expect(acq.remaining === '99', `first Acquire remaining: got ${acq.remaining}, want 99`);
  expect(!acq.degraded, 'first Acquire: degraded, want the shared store to answer');
  const firstGen = BigInt(acq.breaker_generation);
  expect(result.status === 200, `upstream status: got ${result.status}, want 200`);
  expect(rep.state === 'CIRCUIT_STATE_CLOSED' && !rep.ignored, `ReportOutcome(success): got state=${rep.state} ignored=${rep.ignored}, want CLOSED, not ignored`);

  const value = Buffer.from(JSON.stringify(result.body));
  const st = await api.call(api.cache, 'Set', { key: cacheKey, value, ttl: duration(60) });
  expect(st.stored && !st.degraded, `Set: got stored=${st.stored} degraded=${st.degraded}, want stored`);
  got = await api.call(api.cache, 'Get', { key: cacheKey });
  expect(got.found, 'Get after Set: not found');
  expect(seconds(got.ttl) > 0 && seconds(got.ttl) <= 60, `Get ttl: got ${seconds(got.ttl)}s, want in (0, 60]`);
  const parsed = JSON.parse(got.value.toString('utf8'));
  expect(JSON.stringify(parsed) === JSON.stringify(result.body), `cached JSON: got ${JSON.stringify(parsed)}, want ${JSON.stringify(result.body)}`);

  // 2. An inline limit of 2 calls a minute: the third call is refused.
  const tight = { key: `polyglot/node/${runId}/tight`, limit: { max_calls: '2', time_window: duration(60) } };
  for (const want of ['1', '0']) {
    const a = await api.call(api.rs, 'Acquire', tight);
    expect(a.allowed && a.remaining === want, `tight Acquire: got allowed=${a.allowed} remaining=${a.remaining}, want allowed with ${want} left`);
  }
  const limited = await api.call(api.rs, 'Acquire', tight);
  expect(!limited.allowed && limited.reason === 'ACQUIRE_REASON_RATE_LIMITED', `third tight Acquire: got allowed=${limited.allowed} reason=${limited.reason}, want RATE_LIMITED`);
  const ra = seconds(limited.retry_after);
  expect(ra > 0 && ra <= 30, `RATE_LIMITED retry_after: got ${ra}s, want in (0, 30]`);

  // 3. The upstream fails: reported failures open the breaker.
  const policy = (await api.call(api.rs, 'BreakerState', { breaker })).status.policy;
  upstream.healthy = false;
  const tries = Math.max(Number(policy.failure_threshold), Number(policy.minimum_calls)) + 3;
  let opened = false;
  for (let i = 0; i < tries && !opened; i++) {
    ({ acq, result, rep } = await guarded.call(get));
    expect(acq.allowed, `Acquire before the breaker opened: refused (${acq.reason})`);
    expect(result.status === 503, `failing upstream status: got ${result.status}, want 503`);
    expect(!rep.ignored, 'ReportOutcome(failure): ignored, want counted');
    opened = rep.state === 'CIRCUIT_STATE_OPEN';
  }
  expect(opened, `breaker still ${rep.state} after ${tries} failures (policy ${policy.mode} threshold ${policy.failure_threshold})`);

  const hits = upstream.hits;
  ({ acq } = await guarded.call(get));
  expect(!acq.allowed && acq.reason === 'ACQUIRE_REASON_CIRCUIT_OPEN', `Acquire on an open breaker: got allowed=${acq.allowed} reason=${acq.reason}, want CIRCUIT_OPEN`);
  expect(acq.breaker_state === 'CIRCUIT_STATE_OPEN', `breaker_state: got ${acq.breaker_state}, want OPEN`);
  expect(seconds(acq.retry_after) > 0, 'CIRCUIT_OPEN retry_after: got 0, want > 0');
  expect(upstream.hits === hits, 'the upstream was called although the breaker refused');
  const openGen = BigInt(acq.breaker_generation);
  expect(openGen > firstGen, `generation after opening: got ${openGen}, want > ${firstGen}`);

  // 4. Recovery: a half-open probe carries a permit_id back; or a reset.
  upstream.healthy = true;
  const recovery = seconds(policy.recovery_timeout);
  let how;
  if (recovery <= MAX_PROBE_WAIT_S) {
    const deadline = Date.now() + (recovery + 3) * 1000;
    for (;;) {
      await sleep(Math.max(Math.min(seconds(acq.retry_after), 1), 0.02) * 1000);
      acq = await guarded.acquire();
      if (acq.allowed || Date.now() > deadline) break;
    }
    expect(acq.allowed, `Acquire after recovery_timeout ${recovery}s: still refused (${acq.reason})`);
    expect(acq.breaker_state === 'CIRCUIT_STATE_HALF_OPEN' && acq.permit_id !== '', `probe: got breaker_state=${acq.breaker_state} permit_id=${JSON.stringify(acq.permit_id)}, want HALF_OPEN with a permit`);
    const probe = await upstream.get();
    rep = await guarded.report(acq, probe.status === 200, 0.001);
    expect(!rep.ignored, 'probe outcome ignored, want counted');
    for (let i = 1; i < Number(policy.success_threshold); i++) { // more probes when the policy asks for them
      ({ acq, rep } = await guarded.call(get));
      expect(acq.allowed && rep && !rep.ignored, 'further probe refused or ignored');
    }
    expect(rep.state === 'CIRCUIT_STATE_CLOSED', `after successful probes: got ${rep.state}, want CLOSED`);
    how = 'half-open probe';
  } else {
    const s = (await api.call(api.rs, 'ResetBreaker', { breaker })).status;
    expect(s.state === 'CIRCUIT_STATE_CLOSED', `ResetBreaker: got ${s.state}, want CLOSED`);
    how = `ResetBreaker (recovery_timeout ${recovery}s > ${MAX_PROBE_WAIT_S}s: probe not checked)`;
  }

  // 5. An outcome from the generation that opened it is stale: ignored.
  const stale = await api.call(api.rs, 'ReportOutcome', { breaker, outcome: 'OUTCOME_FAILURE', breaker_generation: String(openGen) });
  expect(stale.ignored, `outcome of generation ${openGen}: got ignored=false, want ignored`);
  const status = (await api.call(api.rs, 'BreakerState', { breaker })).status;
  expect(status.state === 'CIRCUIT_STATE_CLOSED' && BigInt(status.generation) > openGen,
    `BreakerState: got ${status.state} generation ${status.generation}, want CLOSED after generation ${openGen}`);

  ({ acq, result, rep } = await guarded.call(get));
  expect(acq.allowed && result.status === 200 && rep.state === 'CIRCUIT_STATE_CLOSED', 'guarded call after recovery failed');

  const del = await api.call(api.cache, 'Delete', { keys: [cacheKey] });
  expect(del.deleted === '1', `Delete: got ${del.deleted} deleted, want 1`);

  console.log(`node client: OK (${api.n} RPCs; breaker ${breaker} opened after failures and closed by ${how}; ` +
    'rate limit, cache JSON round trip and x-correlation-id checked)');
}

async function main() {
  const addr = process.argv[2] || process.env.TOPDECK_RESILIENCE_ADDR || 'localhost:50051';
  const runId = crypto.randomBytes(4).toString('hex');
  const api = new Resilience(addr, runId);
  const upstream = new FakeUpstream();
  await upstream.listen();
  try {
    await checks(api, upstream, runId);
    return 0;
  } catch (e) {
    if (!(e instanceof CheckFailed)) throw e;
    console.error(`node client: FAILED against ${addr}: ${e.message}`);
    return 1;
  } finally {
    api.close();
    await upstream.close();
  }
}

main().then((code) => { process.exitCode = code; }, (e) => {
  console.error('node client: FAILED:', e);
  process.exitCode = 1;
});
