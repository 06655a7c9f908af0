/**
 * `npm run bench -- serve`: requests/s and p50/p99 latency of POST /v1/billing/entitlements/check
 * and POST /v1/billing/usage on loopback, against a bare node:http server answering a constant
 * JSON body in the same run. Each server runs in its own worker thread so the load generator
 * (this thread) does not share its event loop. Options: --requests N (per scenario, default
 * 20000), --seconds S (cap per scenario, default 15), --concurrency C (default 200),
 * --db URL (an empty database, e.g. postgres://…?schema=bench1; default: a fresh SQLite file),
 * --max-concurrent N (the server's limit), --rates R1,R2 (open-loop offered rates at C
 * connections, default 1000,2000,3000 req/s), --rate-seconds S (per rate, default 3).
 */
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

export const SECRET = 'bench-secret-0123456789abcdef';
export const TENANTS = 50;
export const NOW = Date.parse('2026-01-15T12:00:00Z');
const START = Date.parse('2026-01-01T00:00:00Z');

type ServerKind = 'bare' | 'billing';

export interface LoadResult {
  requests: number;
  errors: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
}

export function arg(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1] : fallback;
}

export async function seed(dbUrl: string): Promise<void> {
  const { openDb } = await import('../../src/storage/db.js');
  const { applyCatalog } = await import('../../src/catalog/apply.js');
  const { createTenant } = await import('../../src/subscriptions/tenants.js');
  const { subscribe } = await import('../../src/subscriptions/lifecycle.js');
  const { recordUsage } = await import('../../src/ingest/record.js');
  const db = await openDb(dbUrl, 'none');
  try {
    await db.knex.migrate.latest();
    const opts = { now: START, actor: 'bench' };
    await applyCatalog(
      db,
      {
        features: [
          { key: 'API_CALL', name: 'API calls', aggregation: 'sum' },
          { key: 'OCR_SCAN', name: 'OCR scans', aggregation: 'sum' },
        ],
        plans: [
          {
            key: 'pro',
            name: 'Pro',
            currency: 'USD',
            price: '99.00',
            interval: 'month',
            features: {
              API_CALL: { included: 1_000_000_000, hardStop: true },
              OCR_SCAN: { included: 1000, overage: { model: 'per_unit', unitPrice: '0.01' } },
            },
          },
        ],
      },
      opts,
    );
    for (let i = 0; i < TENANTS; i++) {
      await createTenant(db, { id: `t${i}` }, opts);
      await subscribe(db, { tenantId: `t${i}`, planKey: 'pro', start: START }, opts);
    }
    // Some history so the check reads real rows: 200 events per tenant this period.
    for (let i = 0; i < TENANTS; i++) {
      const events = Array.from({ length: 200 }, (_, j) => ({
        tenantId: `t${i}`,
        featureKey: j % 2 ? 'API_CALL' : 'OCR_SCAN',
        quantity: 1,
        eventId: `seed-${j}`,
        occurredAt: START + j * 60_000,
      }));
      await recordUsage(db, events, { now: NOW });
    }
  } finally {
    await db.close();
  }
}

/** Runs inside a worker thread: one server, reports its port, stops on message. */
async function serveInWorker(kind: ServerKind, dbUrl: string, maxConcurrent: number | undefined): Promise<void> {
  let server: http.Server;
  let close = async () => {};
  if (kind === 'bare') {
    const body = JSON.stringify({ allowed: true, remaining: '10', reason: 'within_plan', hardStop: false, used: '0', included: '10', limit: null });
    server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      });
    });
  } else {
    const { openDb } = await import('../../src/storage/db.js');
    const { createServer, stopServer } = await import('../../src/serve/server.js');
    const db = await openDb(dbUrl);
    server = createServer(db, { auth: { serviceSecrets: [SECRET] }, clock: () => NOW, rateLimit: null, log: null, maxConcurrent });
    close = async () => {
      await stopServer(server, 1000);
      await db.close();
    };
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  parentPort!.postMessage({ port: (server.address() as AddressInfo).port });
  parentPort!.once('message', async () => {
    if (kind === 'bare') server.close();
    await close();
    parentPort!.postMessage({ stopped: true });
  });
}

function startWorker(kind: ServerKind, dbUrl: string, maxConcurrent?: number): Promise<{ port: number; stop(): Promise<void> }> {
  return startServerWorker(new URL(import.meta.url), { benchServe: kind, dbUrl, maxConcurrent });
}

/** Run `module` in a worker whose first message is `{ port }` and which stops on 'stop'. */
export async function startServerWorker(module: URL, workerData: unknown): Promise<{ port: number; stop(): Promise<void> }> {
  const worker = new Worker(module, { workerData });
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', (m) => resolve(m.port));
    worker.once('error', reject);
  });
  return {
    port,
    async stop() {
      const done = new Promise((resolve) => worker.once('message', resolve));
      worker.postMessage('stop');
      await done;
      await worker.terminate();
    },
  };
}

export type MakeRequest = (i: number) => { path: string; body: string };

function send(agent: http.Agent, port: number, r: { path: string; body: string }): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: r.path,
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(r.body), 'x-service-secret': SECRET },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(r.body);
  });
}

/** Closed-loop load: `concurrency` clients each send, wait, send again; bounded count and time. */
export async function load(port: number, make: MakeRequest, total: number, seconds: number, concurrency: number, offset = 0): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  let issued = 0;
  let errors = 0;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  const client = async () => {
    while (issued < total && performance.now() < deadline) {
      const i = offset + issued++;
      const start = performance.now();
      const status = await send(agent, port, make(i));
      latencies.push(performance.now() - start);
      if (status !== 200) errors++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  const elapsed = (performance.now() - t0) / 1000;
  agent.destroy();
  return summarize(latencies, elapsed, errors);
}

/**
 * Open-loop load at a fixed offered rate over `connections` keep-alive connections (all opened
 * first and used in turn): latency counts from when each request was due, not when it was
 * sent, so a stalled server cannot hide its backlog (no coordinated omission).
 */
async function openLoop(port: number, make: MakeRequest, rate: number, seconds: number, connections: number, offset = 0): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, scheduling: 'fifo' });
  await Promise.all(Array.from({ length: connections }, (_, i) => send(agent, port, make(offset + i))));
  const latencies: number[] = [];
  const total = Math.round(rate * seconds);
  let errors = 0;
  const t0 = performance.now();
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < total; ) {
    const now = performance.now();
    for (; i < total && t0 + (i * 1000) / rate <= now; i++) {
      const due = t0 + (i * 1000) / rate;
      inFlight.push(
        send(agent, port, make(offset + connections + i)).then((status) => {
          latencies.push(performance.now() - due);
          if (status !== 200) errors++;
        }),
      );
    }
    // setImmediate, not a 1 ms timer: requests leave on time instead of in late bursts.
    await new Promise((r) => setImmediate(r));
  }
  await Promise.all(inFlight);
  const elapsed = (performance.now() - t0) / 1000;
  agent.destroy();
  return summarize(latencies, elapsed, errors);
}

/** The same core calls without HTTP, one at a time: the floor under the c=1 HTTP rows. */
async function direct(dbUrl: string, kind: 'check' | 'usage', total: number): Promise<LoadResult> {
  const { openDb } = await import('../../src/storage/db.js');
  const { checkEntitlement } = await import('../../src/entitlements/check.js');
  const { recordUsage } = await import('../../src/ingest/record.js');
  const db = await openDb(dbUrl);
  const latencies: number[] = [];
  const t0 = performance.now();
  try {
    for (let i = 0; i < total; i++) {
      const start = performance.now();
      if (kind === 'check') await checkEntitlement(db, { tenantId: `t${i % TENANTS}`, featureKey: 'API_CALL', quantity: '1' }, { now: NOW });
      else await recordUsage(db, [{ tenantId: `t${i % TENANTS}`, featureKey: 'OCR_SCAN', quantity: 1, sourceService: 'direct', sourceEntityId: `d-${i}` }], { now: NOW });
      latencies.push(performance.now() - start);
    }
  } finally {
    await db.close();
  }
  return summarize(latencies, (performance.now() - t0) / 1000, 0);
}

function summarize(latencies: number[], seconds: number, errors: number): LoadResult {
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return { requests: latencies.length, errors, seconds, rps: latencies.length / seconds, p50: pct(0.5), p99: pct(0.99) };
}

export const checkRequest: MakeRequest = (i) => ({
  path: '/v1/billing/entitlements/check',
  body: JSON.stringify({ tenantId: `t${i % TENANTS}`, usageType: 'API_CALL', quantity: 1 }),
});

export const usageRequest: MakeRequest = (i) => ({
  path: '/v1/billing/usage',
  body: JSON.stringify({ tenantId: `t${i % TENANTS}`, usageType: 'OCR_SCAN', quantity: 1, sourceService: 'bench', sourceEntityId: `e-${i}` }),
});

export async function run(args: string[]): Promise<void> {
  const total = Number(arg(args, '--requests', '20000'));
  const seconds = Number(arg(args, '--seconds', '15'));
  const concurrency = Number(arg(args, '--concurrency', '200'));
  const rates = arg(args, '--rates', '1000,2000,3000').split(',').map(Number);
  const rateSeconds = Number(arg(args, '--rate-seconds', '3'));
  const dir = mkdtempSync(path.join(tmpdir(), 'billing-bench-serve-'));
  const dbUrl = arg(args, '--db', `sqlite:${path.join(dir, 'bench.db')}`);
  try {
    await seed(dbUrl);
    const rows: Array<[string, number, LoadResult]> = [];
    const warm = Math.min(2000, total);

    const paced: Array<[string, number, LoadResult]> = [];
    const bare = await startWorker('bare', dbUrl);
    await load(bare.port, checkRequest, warm, seconds, concurrency);
    rows.push(['bare http (constant JSON)', concurrency, await load(bare.port, checkRequest, total, seconds, concurrency)]);
    for (const rate of rates) paced.push(['bare http (constant JSON)', rate, await openLoop(bare.port, checkRequest, rate, rateSeconds, concurrency)]);
    await bare.stop();

    const maxConcurrent = args.includes('--max-concurrent') ? Number(arg(args, '--max-concurrent', '4')) : undefined;
    const billing = await startWorker('billing', dbUrl, maxConcurrent);
    await load(billing.port, checkRequest, warm, seconds, concurrency);
    rows.push(['entitlements/check', concurrency, await load(billing.port, checkRequest, total, seconds, concurrency)]);
    rows.push(['entitlements/check', 1, await load(billing.port, checkRequest, Math.min(total, 3000), seconds, 1)]);
    for (const rate of rates) paced.push(['entitlements/check', rate, await openLoop(billing.port, checkRequest, rate, rateSeconds, concurrency)]);
    rows.push(['usage (1 event)', concurrency, await load(billing.port, usageRequest, total, seconds, concurrency)]);
    rows.push(['usage (1 event)', 1, await load(billing.port, usageRequest, Math.min(total, 3000), seconds, 1, 10_000_000)]);
    await billing.stop();
    rows.push(['checkEntitlement() direct', 1, await direct(dbUrl, 'check', Math.min(total, 3000))]);
    rows.push(['recordUsage() direct', 1, await direct(dbUrl, 'usage', Math.min(total, 3000))]);

    const base = rows[0][2].rps;
    console.log(`db: ${dbUrl.startsWith('sqlite:') ? 'sqlite (fresh file)' : dbUrl.replace(/\/\/[^@]*@/, '//***@')}, ${TENANTS} tenants`);
    console.log('scenario                      conc   requests  errors     req/s   p50 ms   p99 ms  bare/this');
    for (const [name, c, r] of rows) {
      console.log(
        `${name.padEnd(28)} ${String(c).padStart(5)} ${String(r.requests).padStart(10)} ${String(r.errors).padStart(7)} ${r.rps.toFixed(0).padStart(9)} ${r.p50.toFixed(2).padStart(8)} ${r.p99.toFixed(2).padStart(8)} ${(base / r.rps).toFixed(2).padStart(9)}×`,
      );
    }
    console.log('(closed loop: at concurrency C, latency ≈ C / throughput, so p99 at 200 is mostly queueing)');
    console.log(`\nopen loop: ${concurrency} keep-alive connections, fixed offered rate, latency from each request's due time`);
    console.log('scenario                      rate/s   requests  errors   p50 ms   p99 ms');
    for (const [name, rate, r] of paced) {
      console.log(
        `${name.padEnd(28)} ${String(rate).padStart(7)} ${String(r.requests).padStart(10)} ${String(r.errors).padStart(7)} ${r.p50.toFixed(2).padStart(8)} ${r.p99.toFixed(2).padStart(8)}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (!isMainThread && workerData?.benchServe) {
  void serveInWorker(workerData.benchServe as ServerKind, workerData.dbUrl as string, workerData.maxConcurrent as number | undefined);
}
