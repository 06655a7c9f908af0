import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { forDialect, type Db } from '../storage/db.js';
import { authenticate, type Client } from './auth.js';
import { readBody, readJsonBody } from './body.js';
import { SERVE_DEFAULTS, type ServeConfig } from './config.js';
import { Gate } from './gate.js';
import { UsageGroupCommit } from './group-commit.js';
import { HttpError, toHttpError } from './http-error.js';
import { Metrics } from './metrics.js';
import { RateLimiter } from './rate-limit.js';
import { ROUTES } from './routes/index.js';
import type { Reply, Route, RouteContext } from './routes/types.js';

interface CompiledRoute {
  route: Route;
  segments: string[];
}

type Match = { route: Route; params: Record<string, string> } | { allow: string[] } | null;

interface ServerState {
  closing: boolean;
}

const states = new WeakMap<http.Server, ServerState>();

function compile(routes: Route[]): CompiledRoute[] {
  return routes.map((route) => ({ route, segments: route.path.split('/') }));
}

function match(compiled: CompiledRoute[], method: string, pathname: string): Match {
  const parts = pathname.split('/');
  const allow: string[] = [];
  for (const { route, segments } of compiled) {
    if (segments.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < segments.length && ok; i++) {
      const s = segments[i];
      if (s.startsWith(':')) {
        if (parts[i] === '') ok = false;
        else params[s.slice(1)] = parts[i];
      } else if (s !== parts[i]) ok = false;
    }
    if (!ok) continue;
    if (route.method !== method) {
      allow.push(route.method);
      continue;
    }
    for (const k of Object.keys(params)) {
      try {
        params[k] = decodeURIComponent(params[k]);
      } catch {
        throw new HttpError(400, 'invalid_path', `path segment "${params[k]}" is not valid percent-encoding`);
      }
    }
    return { route, params };
  }
  return allow.length ? { allow } : null;
}

/** Everything a request needs from the server it arrived at, resolved once at start. */
interface ServerParts {
  db: Db;
  config: ServeConfig;
  bodyLimitBytes: number;
  maxBatch: number;
  timeoutMs: number;
  limiter: RateLimiter | null;
  gate: Gate;
  metrics: Metrics;
  usage: UsageGroupCommit;
  routes: CompiledRoute[];
  state: ServerState;
}

function serverParts(db: Db, config: ServeConfig): ServerParts {
  const rateLimit = config.rateLimit === undefined ? SERVE_DEFAULTS.rateLimit : config.rateLimit;
  const gate = new Gate(config.maxConcurrent ?? forDialect(db, SERVE_DEFAULTS.maxConcurrent));
  return {
    db,
    config,
    bodyLimitBytes: config.bodyLimitBytes ?? SERVE_DEFAULTS.bodyLimitBytes,
    maxBatch: config.maxBatch ?? SERVE_DEFAULTS.maxBatch,
    timeoutMs: config.requestTimeoutMs ?? SERVE_DEFAULTS.requestTimeoutMs,
    limiter: rateLimit ? new RateLimiter(rateLimit) : null,
    gate,
    metrics: new Metrics(() => gate.queued),
    usage: new UsageGroupCommit(db, undefined, config.backfillDays),
    routes: compile(ROUTES),
    state: { closing: false },
  };
}

/**
 * The entitlement and usage HTTP API on Node's http module. Listen on port 0 in tests;
 * stop with `stopServer` so in-flight requests finish.
 */
export function createServer(db: Db, config: ServeConfig): http.Server {
  const parts = serverParts(db, config);
  const server = http.createServer(
    { requestTimeout: parts.timeoutMs, headersTimeout: Math.min(parts.timeoutMs, 60_000), keepAliveTimeout: 5_000 },
    // handle() answers every error itself; this only guards against a throwing log sink.
    (req, res) => void handle(parts, req, res).catch(() => res.destroy()),
  );
  states.set(server, parts.state);
  return server;
}

function overloaded(timeoutMs: number): HttpError {
  return new HttpError(503, 'timeout', `request not handled within ${timeoutMs} ms; retry later`, { Connection: 'close' });
}

/** Run the route under the request deadline: body read first, then a turn at the gate. */
async function dispatch(
  p: ServerParts,
  req: IncomingMessage,
  route: Route,
  params: Record<string, string>,
  query: URLSearchParams,
  now: number,
  client: Client | null,
): Promise<Reply> {
  const { timeoutMs } = p;
  let timer: NodeJS.Timeout | undefined;
  let expired = false;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      expired = true;
      // A body still arriving is the client's slowness (408); otherwise ours (503).
      reject(req.complete ? overloaded(timeoutMs) : new HttpError(408, 'request_timeout', `request body not received within ${timeoutMs} ms`, { Connection: 'close' }));
    }, timeoutMs);
  });
  const work = async (): Promise<Reply> => {
    // Bodies are read before queueing, so a slow client never holds a slot.
    const body = route.body === 'json' ? await readJsonBody(req, p.bodyLimitBytes) : route.body === 'raw' ? await readBody(req, p.bodyLimitBytes) : undefined;
    const ctx: RouteContext = {
      db: p.db,
      req,
      params,
      query,
      body,
      client,
      now,
      maxBatch: p.maxBatch,
      stripeWebhookSecret: p.config.stripeWebhookSecret ?? null,
      metrics: p.metrics,
      usage: p.usage,
      backfillDays: p.config.backfillDays,
    };
    if (!route.queued) return route.handle(ctx);
    // A request whose deadline passed while queued is not started at all.
    return p.gate.run(() => (expired ? Promise.reject(overloaded(timeoutMs)) : route.handle(ctx)));
  };
  try {
    return await Promise.race([work(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Authenticate and rate-limit; returns the client (null on public routes) or throws the HTTP error. */
async function admit(p: ServerParts, req: IncomingMessage, route: Route, now: number, headers: Record<string, string>, who: { id: string }): Promise<Client | null> {
  if (!route.auth) return null;
  const auth = await authenticate(req.headers, p.config.auth, now);
  if (auth.ok) who.id = auth.client.id;
  // Failed attempts count against the caller's IP, which also slows guessing.
  const allowed = p.limiter ? p.limiter.take(who.id) : { ok: true as const };
  if (!allowed.ok) {
    headers['Retry-After'] = String(allowed.retryAfterSec);
    throw new HttpError(429, 'rate_limited', `too many requests; retry after ${allowed.retryAfterSec} s`);
  }
  if (!auth.ok) {
    headers['WWW-Authenticate'] = 'Bearer';
    throw new HttpError(401, 'unauthorized', auth.message);
  }
  return auth.client;
}

async function handle(p: ServerParts, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const started = performance.now();
  p.metrics.requestStarted();
  const method = req.method ?? 'GET';
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const pathname = q < 0 ? url : url.slice(0, q);
  let label = 'unmatched';
  const who = { id: `ip:${req.socket.remoteAddress ?? 'unknown'}` };
  let reply: Reply;
  let failure: unknown;
  const headers: Record<string, string> = {};
  try {
    const m = match(p.routes, method, pathname);
    if (!m) throw new HttpError(404, 'not_found', `no route ${method} ${pathname}`);
    if ('allow' in m) {
      headers.Allow = m.allow.join(', ');
      throw new HttpError(405, 'method_not_allowed', `${pathname} accepts ${m.allow.join(', ')}`);
    }
    label = m.route.path;
    const now = p.config.clock();
    const client = await admit(p, req, m.route, now, headers, who);
    reply = await dispatch(p, req, m.route, m.params, new URLSearchParams(q < 0 ? '' : url.slice(q + 1)), now, client);
  } catch (e) {
    const err = toHttpError(e);
    if (err.status >= 500 && !(e instanceof HttpError)) failure = e;
    Object.assign(headers, err.headers);
    reply = { status: err.status, body: { error: err.code, message: err.message } };
  }
  send(res, reply, headers, p.state.closing);
  const seconds = (performance.now() - started) / 1000;
  p.metrics.observeRequest(method, label, reply.status, seconds);
  p.config.log?.(logEntry(method, pathname, label, reply.status, seconds, who.id, failure));
}

function logEntry(method: string, path: string, route: string, status: number, seconds: number, client: string, failure: unknown): Record<string, unknown> {
  const entry: Record<string, unknown> = {
    level: failure ? 'error' : 'info',
    msg: 'request',
    method,
    path,
    route,
    status,
    duration_ms: Math.round(seconds * 1e6) / 1e3,
    client,
  };
  if (failure) entry.error = errorKind(failure);
  return entry;
}

/**
 * What the log says about an unexpected failure: its kind and code. Not its message: a
 * database error's message carries the SQL and the submitted values.
 */
export function errorKind(e: unknown): string {
  if (!(e instanceof Error)) return typeof e;
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' || typeof code === 'number' ? `${e.name} ${code}` : e.name;
}

function send(res: ServerResponse, reply: Reply, headers: Record<string, string>, closing: boolean): void {
  if (res.headersSent || res.writableEnded) return;
  const payload = reply.text ?? JSON.stringify(reply.body ?? {});
  res.statusCode = reply.status;
  res.setHeader('Content-Type', reply.contentType ?? 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(payload));
  res.setHeader('Cache-Control', 'no-store');
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  // While shutting down, tell keep-alive clients to go away once this response is out.
  if (closing) res.setHeader('Connection', 'close');
  res.end(payload);
}

/**
 * Graceful stop: refuse new connections, let in-flight requests finish (their responses
 * close the connection), drop idle keep-alive sockets; after `graceMs` cut whatever is left.
 */
export function stopServer(server: http.Server, graceMs = 10_000): Promise<void> {
  const state = states.get(server);
  if (state) state.closing = true;
  return new Promise((resolve, reject) => {
    const force = setTimeout(() => server.closeAllConnections(), graceMs);
    force.unref();
    server.close((err) => {
      clearTimeout(force);
      if (err && (err as NodeJS.ErrnoException).code !== 'ERR_SERVER_NOT_RUNNING') reject(err);
      else resolve();
    });
    server.closeIdleConnections();
  });
}
