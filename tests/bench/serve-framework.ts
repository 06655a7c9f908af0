/**
 * `npm run bench -- serve-framework`: should `billing serve` move from node:http to fastify?
 * The same routes, auth, gate and handlers (src/serve) are served (a) by src/serve/server.ts
 * and (b) by a fastify app doing the routing, body limit, JSON parsing and timeouts itself;
 * bare servers answering a constant JSON body on each give the floor. Rounds interleave the
 * servers (the first one alternating), each in its own worker thread against the same
 * database and client; the summary is the median over rounds and the median per-round ratio,
 * of requests/s and of this process's CPU time per request.
 *
 * fastify is not a dependency: the bench resolves it from BILLING_BENCH_FASTIFY (a directory
 * where `npm i fastify` ran) or from the project, and skips with a notice when it cannot.
 * Options: --rounds N (default 7), --requests N (per scenario and round, default 5000),
 * --concurrency C (default 200), --seconds S (cap per scenario, default 15), --db URL (an
 * empty database, e.g. postgres://…?schema=fw1; default: a fresh SQLite file); --behaviour
 * instead prints how both variants answer edge cases (no section written).
 */
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { ServeConfig } from '../../src/serve/config.js';
import type { Db } from '../../src/storage/db.js';
import { NOW, SECRET, arg, checkRequest, load, seed, startServerWorker, usageRequest, type LoadResult } from './serve.js';

type Kind = 'node' | 'fastify' | 'bare-node' | 'bare-fastify';
type Measured = LoadResult & { cpuUs: number };

/** The slice of fastify's API used here (it is resolved at run time, without its types). */
interface FRequest {
  raw: http.IncomingMessage;
  headers: http.IncomingHttpHeaders;
  params: unknown;
  query: unknown;
  body: unknown;
  method: string;
  url: string;
  signal: AbortSignal;
  routeOptions: { url?: string };
  bill: RequestState;
}
interface FReply {
  code(status: number): FReply;
  header(name: string, value: string): FReply;
  type(contentType: string): FReply;
  send(payload?: unknown): FReply;
  statusCode: number;
  elapsedTime: number;
}
type Hook = (req: FRequest, reply: FReply) => Promise<void> | void;
interface FApp {
  route(opts: { method: string; url: string; onRequest?: Hook; handler: (req: FRequest, reply: FReply) => Promise<unknown> | unknown }): void;
  addHook(name: 'onRequest' | 'onResponse', fn: Hook): void;
  decorateRequest(name: string, value: unknown): void;
  setErrorHandler(fn: (e: unknown, req: FRequest, reply: FReply) => unknown): void;
  setNotFoundHandler(fn: (req: FRequest, reply: FReply) => unknown): void;
  register(plugin: (app: FApp) => Promise<void>): void;
  removeAllContentTypeParsers(): void;
  addContentTypeParser(type: string, opts: { parseAs: 'buffer' }, parser: (req: FRequest, body: Buffer, done: (e: Error | null, body?: unknown) => void) => void): void;
  listen(opts: { port: number; host: string }): Promise<string>;
  close(): Promise<void>;
  server: http.Server;
}
type Fastify = (opts: Record<string, unknown>) => FApp;

interface RequestState {
  now: number;
  client: unknown;
  who: string;
  headers: Record<string, string>;
  failure: unknown;
}

/** fastify's entry file: from BILLING_BENCH_FASTIFY when set, else from the project; null when absent. */
function resolveFastify(): string | null {
  const dir = process.env.BILLING_BENCH_FASTIFY;
  const from = dir ? path.join(path.resolve(dir), 'package.json') : import.meta.url;
  try {
    return createRequire(from).resolve('fastify');
  } catch {
    return null;
  }
}

async function importFastify(entry: string): Promise<Fastify> {
  const mod = (await import(pathToFileURL(entry).href)) as { default: Fastify };
  return mod.default;
}

/**
 * src/serve/server.ts's behaviour on fastify: its router, bodyLimit, JSON parser, requestTimeout
 * (body not received: 408) and handlerTimeout (not answered: 503) replace the hand-written ones;
 * auth, rate limit, the gate, the handlers, metrics and the access log are src/serve's own.
 */
async function billingOnFastify(fastify: Fastify, db: Db, config: ServeConfig): Promise<FApp> {
  const { forDialect } = await import('../../src/storage/db.js');
  const { authenticate } = await import('../../src/serve/auth.js');
  const { SERVE_DEFAULTS } = await import('../../src/serve/config.js');
  const { Gate } = await import('../../src/serve/gate.js');
  const { UsageGroupCommit } = await import('../../src/serve/group-commit.js');
  const { HttpError, toHttpError } = await import('../../src/serve/http-error.js');
  const { Metrics } = await import('../../src/serve/metrics.js');
  const { RateLimiter } = await import('../../src/serve/rate-limit.js');
  const { ROUTES } = await import('../../src/serve/routes/index.js');
  const { errorKind } = await import('../../src/serve/server.js');
  type Reply = import('../../src/serve/routes/types.js').Reply;
  type Client = import('../../src/serve/auth.js').Client;

  const timeoutMs = config.requestTimeoutMs ?? SERVE_DEFAULTS.requestTimeoutMs;
  const rateLimit = config.rateLimit === undefined ? SERVE_DEFAULTS.rateLimit : config.rateLimit;
  const limiter = rateLimit ? new RateLimiter(rateLimit) : null;
  const gate = new Gate(config.maxConcurrent ?? forDialect(db, SERVE_DEFAULTS.maxConcurrent));
  const metrics = new Metrics(() => gate.queued);
  const usage = new UsageGroupCommit(db, undefined, config.backfillDays);
  const overloaded = () => new HttpError(503, 'timeout', `request not handled within ${timeoutMs} ms; retry later`, { Connection: 'close' });

  const app = fastify({
    logger: false,
    bodyLimit: config.bodyLimitBytes ?? SERVE_DEFAULTS.bodyLimitBytes,
    requestTimeout: timeoutMs,
    handlerTimeout: timeoutMs,
    keepAliveTimeout: 5_000,
    http: { headersTimeout: Math.min(timeoutMs, 60_000) },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { querystringParser: (s: string) => new URLSearchParams(s) },
  });
  app.decorateRequest('bill', null);

  const send = (reply: FReply, r: Reply, headers: Record<string, string>) => {
    reply.code(r.status).header('Cache-Control', 'no-store');
    for (const [k, v] of Object.entries(headers)) reply.header(k, v);
    if (r.text !== undefined) reply.type(r.contentType ?? 'text/plain; charset=utf-8').send(r.text);
    else reply.type(r.contentType ?? 'application/json; charset=utf-8').send(JSON.stringify(r.body ?? {}));
  };
  const fail = (reply: FReply, err: InstanceType<typeof HttpError>, headers: Record<string, string>) =>
    send(reply, { status: err.status, body: { error: err.code, message: err.message } }, { ...headers, ...err.headers });

  app.addHook('onRequest', async (req) => {
    metrics.requestStarted();
    req.bill = { now: config.clock(), client: null, who: `ip:${req.raw.socket.remoteAddress ?? 'unknown'}`, headers: {}, failure: undefined };
  });
  app.addHook('onResponse', async (req, reply) => {
    const seconds = reply.elapsedTime / 1000;
    const label = req.routeOptions.url ?? 'unmatched';
    metrics.observeRequest(req.method, label, reply.statusCode, seconds);
    if (config.log) {
      const entry: Record<string, unknown> = { level: req.bill.failure ? 'error' : 'info', msg: 'request', method: req.method, path: req.url.split('?')[0], route: label, status: reply.statusCode, duration_ms: Math.round(seconds * 1e6) / 1e3, client: req.bill.who };
      if (req.bill.failure) entry.error = errorKind(req.bill.failure);
      config.log(entry);
    }
  });

  // Before the body is read, as today: an unauthenticated caller's body is never parsed.
  const admit: Hook = async (req) => {
    const bill = req.bill;
    const auth = await authenticate(req.headers, config.auth, bill.now);
    if (auth.ok) bill.who = auth.client.id;
    const allowed = limiter ? limiter.take(bill.who) : { ok: true as const };
    if (!allowed.ok) {
      bill.headers['Retry-After'] = String(allowed.retryAfterSec);
      throw new HttpError(429, 'rate_limited', `too many requests; retry after ${allowed.retryAfterSec} s`);
    }
    if (!auth.ok) {
      bill.headers['WWW-Authenticate'] = 'Bearer';
      throw new HttpError(401, 'unauthorized', auth.message);
    }
    bill.client = auth.client;
  };

  const addRoutes = (scope: FApp, body: 'json' | 'raw' | 'none') => {
    for (const route of ROUTES.filter((r) => r.body === body || (body === 'json' && r.body === 'none'))) {
      scope.route({
        method: route.method,
        url: route.path,
        onRequest: route.auth ? admit : undefined,
        handler: async (req, reply) => {
          const bill = req.bill;
          const ctx = {
            db,
            req: req.raw,
            params: req.params as Record<string, string>,
            query: req.query as URLSearchParams,
            body: route.body === 'none' ? undefined : req.body,
            client: bill.client as Client | null,
            now: bill.now,
            maxBatch: config.maxBatch ?? SERVE_DEFAULTS.maxBatch,
            stripeWebhookSecret: config.stripeWebhookSecret ?? null,
            metrics,
            usage,
            backfillDays: config.backfillDays,
          };
          // A request whose deadline passed while queued is not started at all. Not just
          // `signal.aborted`: fastify also aborts it when the request stream closes, which on
          // Node 20 is as soon as the body has been read.
          const expired = () => (req.signal.reason as { code?: unknown } | undefined)?.code === 'FST_ERR_HANDLER_TIMEOUT';
          const r = route.queued ? await gate.run(() => (expired() ? Promise.reject(overloaded()) : route.handle(ctx))) : await route.handle(ctx);
          send(reply, r, bill.headers);
          return reply;
        },
      });
    }
  };
  addRoutes(app, 'json');
  // Signed payloads are verified over the exact bytes: that route keeps the raw body.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    addRoutes(scope, 'raw');
  });

  app.setErrorHandler((e, req, reply) => {
    const code = (e as { code?: unknown }).code;
    let err: InstanceType<typeof HttpError>;
    if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') err = new HttpError(413, 'payload_too_large', `request body exceeds ${config.bodyLimitBytes ?? SERVE_DEFAULTS.bodyLimitBytes} bytes; send smaller batches`);
    else if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY') err = new HttpError(400, 'invalid_json', 'request body is empty; send JSON');
    else if (code === 'FST_ERR_CTP_INVALID_JSON_BODY' || (e instanceof SyntaxError && (e as { statusCode?: number }).statusCode === 400)) err = new HttpError(400, 'invalid_json', `request body is not valid JSON: ${(e as Error).message}`);
    else if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') err = new HttpError(415, 'unsupported_media_type', 'send Content-Type: application/json');
    else if (code === 'FST_ERR_HANDLER_TIMEOUT') err = overloaded();
    else {
      err = toHttpError(e);
      if (err.status >= 500 && !(e instanceof HttpError)) req.bill.failure = e;
    }
    fail(reply, err, req.bill?.headers ?? {});
    return reply;
  });
  // 405 + Allow would need the per-path method table the node:http router keeps; not measured here.
  app.setNotFoundHandler((req, reply) => {
    fail(reply, new HttpError(404, 'not_found', `no route ${req.method} ${req.url.split('?')[0]}`), {});
    return reply;
  });
  return app;
}

const BARE_BODY = JSON.stringify({ allowed: true, remaining: '10', reason: 'within_plan', hardStop: false, used: '0', included: '10', limit: null });

/** Runs inside a worker thread: one server, reports its port, stops on message. */
async function serveInWorker(kind: Kind, dbUrl: string, fastifyEntry: string): Promise<void> {
  let port: number;
  let close: () => Promise<void>;
  const config: ServeConfig = { auth: { serviceSecrets: [SECRET] }, clock: () => NOW, rateLimit: null, log: null };
  if (kind === 'node' || kind === 'bare-node') {
    let server: http.Server;
    let db: Db | undefined;
    if (kind === 'node') {
      const { openDb } = await import('../../src/storage/db.js');
      const { createServer } = await import('../../src/serve/server.js');
      db = await openDb(dbUrl);
      server = createServer(db, config);
    } else {
      server = http.createServer((req, res) => {
        req.resume();
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BARE_BODY) });
          res.end(BARE_BODY);
        });
      });
    }
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    close = async () => {
      const { stopServer } = await import('../../src/serve/server.js');
      await stopServer(server, 1000);
      await db?.close();
    };
  } else {
    const fastify = await importFastify(fastifyEntry);
    let app: FApp;
    let db: Db | undefined;
    if (kind === 'fastify') {
      const { openDb } = await import('../../src/storage/db.js');
      db = await openDb(dbUrl);
      app = await billingOnFastify(fastify, db, config);
    } else {
      app = fastify({ logger: false });
      app.route({ method: 'POST', url: '/v1/billing/entitlements/check', handler: (_req, reply) => reply.type('application/json').send(BARE_BODY) });
    }
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as AddressInfo).port;
    close = async () => {
      await app.close();
      await db?.close();
    };
  }
  parentPort!.postMessage({ port });
  parentPort!.once('message', async () => {
    await close();
    parentPort!.postMessage({ stopped: true });
  });
}

function startWorker(kind: Kind, dbUrl: string, fastifyEntry: string): Promise<{ port: number; stop(): Promise<void> }> {
  return startServerWorker(new URL(import.meta.url), { benchFramework: kind, dbUrl, fastifyEntry });
}

const SCENARIOS = ['check', 'usage (1 event)', 'check, 1 connection'] as const;
type Scenario = (typeof SCENARIOS)[number] | 'constant JSON';

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/**
 * `--behaviour`: the same edge-case requests to both variants, one line each (status, body,
 * access-log status), to see what a port would change; prints only, writes no section.
 */
async function behaviour(fastifyEntry: string): Promise<void> {
  const { openDb } = await import('../../src/storage/db.js');
  const { createServer, stopServer } = await import('../../src/serve/server.js');
  const dir = mkdtempSync(path.join(tmpdir(), 'billing-bench-fw-'));
  const dbUrl = `sqlite:${path.join(dir, 'bench.db')}`;
  await seed(dbUrl);
  const db = await openDb(dbUrl);
  const CHECK = '/v1/billing/entitlements/check';
  const SVC = { 'x-service-secret': SECRET };
  const ok = '{"tenantId":"t1","usageType":"API_CALL"}';
  const config = (logs: Array<Record<string, unknown>>): ServeConfig => ({
    auth: { serviceSecrets: [SECRET] },
    clock: () => NOW,
    rateLimit: null,
    log: (e) => logs.push(e),
    bodyLimitBytes: 1024,
    requestTimeoutMs: 300,
  });
  type Call = { method?: string; path?: string; headers?: Record<string, string>; body?: string; chunks?: string[]; stall?: string };
  const call = (port: number, c: Call) =>
    new Promise<string>((resolve) => {
      const req = http.request(
        { host: '127.0.0.1', port, method: c.method ?? 'POST', path: c.path ?? CHECK, headers: { 'content-type': 'application/json', ...SVC, ...c.headers } },
        (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve(`${res.statusCode}${res.headers.allow ? ` Allow: ${res.headers.allow}` : ''} ${text.slice(0, 90)}`));
        },
      );
      req.on('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code}`));
      if (c.chunks) {
        for (const chunk of c.chunks) req.write(chunk);
        req.end();
      } else if (c.stall) req.write(c.stall);
      else req.end(c.method === 'GET' ? undefined : (c.body ?? ok));
    });
  const cases: Array<[string, Call]> = [
    ['wrong method', { method: 'GET' }],
    ['declared too large', { body: JSON.stringify({ pad: 'x'.repeat(4000) }) }],
    ['chunked too large', { headers: { 'transfer-encoding': 'chunked' }, chunks: Array(8).fill('x'.repeat(512)) }],
    ['malformed JSON', { body: '{"tenantId": "t1",' }],
    ['empty body', { body: '' }],
    ['text/plain JSON', { headers: { 'content-type': 'text/plain' } }],
    ['no content-type', { headers: { 'content-type': '' } }],
    ['__proto__ key', { body: '{"tenantId":"t1","usageType":"API_CALL","__proto__":{"x":1}}' }],
    ['bad percent-encoding', { method: 'GET', path: '/v1/billing/usage/%E0%A4%A' }],
    ['body stops arriving', { headers: { 'content-length': '100' }, stall: '{"tenantId":' }],
  ];
  const nodeLogs: Array<Record<string, unknown>> = [];
  const server = createServer(db, config(nodeLogs));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const fastifyLogs: Array<Record<string, unknown>> = [];
  const app = await billingOnFastify(await importFastify(fastifyEntry), db, config(fastifyLogs));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const variants: Array<[string, number, Array<Record<string, unknown>>]> = [
    ['node', (server.address() as AddressInfo).port, nodeLogs],
    ['fastify', (app.server.address() as AddressInfo).port, fastifyLogs],
  ];
  try {
    for (const [name, c] of cases) {
      for (const [kind, port, logs] of variants) {
        const before = logs.length;
        const answer = await call(port, c);
        const logged = logs.slice(before).map((l) => l.status).join(',') || 'none';
        console.log(`${(kind === 'node' ? name : '').padEnd(22)} ${kind.padEnd(8)} log: ${logged.padEnd(5)} ${answer}`);
      }
    }
  } finally {
    await stopServer(server, 500);
    await app.close();
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(args: string[]): Promise<void | 'skipped'> {
  const fastifyEntry = resolveFastify();
  if (!fastifyEntry) {
    console.log(
      'serve-framework: skipped, fastify cannot be resolved (it is not a dependency). Install it outside the project, ' +
        'e.g. `mkdir -p /tmp/fastify-probe && cd /tmp/fastify-probe && npm init -y && npm i fastify`, ' +
        'then run with BILLING_BENCH_FASTIFY=/tmp/fastify-probe.',
    );
    return 'skipped';
  }
  if (args.includes('--behaviour')) {
    await behaviour(fastifyEntry);
    return 'skipped';
  }
  const fastifyVersion = (JSON.parse(readFileSync(path.join(path.dirname(fastifyEntry), 'package.json'), 'utf8')) as { version: string }).version;
  const rounds = Number(arg(args, '--rounds', '7'));
  const total = Number(arg(args, '--requests', '5000'));
  const seconds = Number(arg(args, '--seconds', '15'));
  const concurrency = Number(arg(args, '--concurrency', '200'));
  const dir = mkdtempSync(path.join(tmpdir(), 'billing-bench-fw-'));
  const dbUrl = arg(args, '--db', `sqlite:${path.join(dir, 'bench.db')}`);
  const results = new Map<string, Measured[]>();
  // CPU time of this process (load generator and server threads) per request: far less moved
  // than requests/s by other work on a shared machine, and the client's share is the same for both.
  const keep = async (kind: Kind, scenario: Scenario, measure: () => Promise<LoadResult>) => {
    const cpu0 = process.cpuUsage();
    const r = await measure();
    const cpu = process.cpuUsage(cpu0);
    const key = `${kind}|${scenario}`;
    results.set(key, [...(results.get(key) ?? []), { ...r, cpuUs: (cpu.user + cpu.system) / r.requests }]);
  };
  const t0 = performance.now();
  try {
    await seed(dbUrl);
    let offset = 100_000_000;
    for (let round = 0; round < rounds; round++) {
      // The first server of a round alternates, so drift and warm caches favour neither.
      const pairs: Kind[][] = [
        ['node', 'fastify'],
        ['bare-node', 'bare-fastify'],
      ];
      for (const pair of pairs) {
        for (const kind of round % 2 ? [...pair].reverse() : pair) {
          const w = await startWorker(kind, dbUrl, fastifyEntry);
          await load(w.port, checkRequest, Math.min(1000, total), seconds, concurrency);
          if (kind.startsWith('bare')) {
            await keep(kind, 'constant JSON', () => load(w.port, checkRequest, total, seconds, concurrency));
          } else {
            await keep(kind, 'check', () => load(w.port, checkRequest, total, seconds, concurrency));
            await keep(kind, 'usage (1 event)', () => load(w.port, usageRequest, total, seconds, concurrency, (offset += 1_000_000)));
            await keep(kind, 'check, 1 connection', () => load(w.port, checkRequest, Math.min(total, 1500), seconds, 1));
          }
          await w.stop();
        }
      }
    }

    console.log(`db: ${dbUrl.startsWith('sqlite:') ? 'sqlite (fresh file)' : dbUrl.replace(/\/\/[^@]*@/, '//***@')}; fastify ${fastifyVersion}; node ${process.version}`);
    console.log(`${rounds} rounds, servers interleaved (first one alternating); ${total} requests per scenario and round at ${concurrency} keep-alive connections (1,500 at one); ${((performance.now() - t0) / 1000).toFixed(0)} s in all`);
    console.log('scenario              server          median req/s (min–max)   p50 ms   p99 ms  CPU µs/req  errors');
    const rows: Array<[Scenario, Kind, Kind]> = [
      ...SCENARIOS.map((s): [Scenario, Kind, Kind] => [s, 'node', 'fastify']),
      ['constant JSON', 'bare-node', 'bare-fastify'],
    ];
    const ratioLines: string[] = [];
    for (const [scenario, a, b] of rows) {
      const ra = results.get(`${a}|${scenario}`)!;
      const rb = results.get(`${b}|${scenario}`)!;
      for (const [kind, rs] of [
        [a, ra],
        [b, rb],
      ] as const) {
        const rps = rs.map((r) => r.rps);
        console.log(
          `${(kind === a ? scenario : '').padEnd(21)} ${kind.padEnd(14)} ${median(rps).toFixed(0).padStart(8)} (${Math.min(...rps).toFixed(0)}–${Math.max(...rps).toFixed(0)})`.padEnd(58) +
            `${median(rs.map((r) => r.p50)).toFixed(2).padStart(7)} ${median(rs.map((r) => r.p99)).toFixed(2).padStart(8)} ${median(rs.map((r) => r.cpuUs)).toFixed(0).padStart(11)} ${String(rs.reduce((n, r) => n + r.errors, 0)).padStart(7)}`,
        );
      }
      const rpsRatios = ra.map((r, i) => rb[i].rps / r.rps);
      const cpuRatios = ra.map((r, i) => rb[i].cpuUs / r.cpuUs);
      const fmt = (xs: number[]) => `${median(xs).toFixed(2)} (rounds: ${xs.map((x) => x.toFixed(2)).join(' ')})`;
      ratioLines.push(`${scenario.padEnd(21)} req/s ${fmt(rpsRatios)}`, `${''.padEnd(21)} CPU   ${fmt(cpuRatios)}`);
    }
    console.log('\nfastify / node:http, median of the per-round ratios (req/s above 1: fastify served more; CPU above 1: fastify spent more per request)');
    for (const line of ratioLines) console.log(line);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (!isMainThread && workerData?.benchFramework) {
  void serveInWorker(workerData.benchFramework as Kind, workerData.dbUrl as string, workerData.fastifyEntry as string);
}
