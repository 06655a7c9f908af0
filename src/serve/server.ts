import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Db } from '../storage/db.js';
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

/**
 * The entitlement and usage HTTP API on Node's http module. Listen on port 0 in tests;
 * stop with `stopServer` so in-flight requests finish.
 */
export function createServer(db: Db, config: ServeConfig): http.Server {
  const bodyLimitBytes = config.bodyLimitBytes ?? SERVE_DEFAULTS.bodyLimitBytes;
  const maxBatch = config.maxBatch ?? SERVE_DEFAULTS.maxBatch;
  const timeoutMs = config.requestTimeoutMs ?? SERVE_DEFAULTS.requestTimeoutMs;
  const rateLimit = config.rateLimit === undefined ? SERVE_DEFAULTS.rateLimit : config.rateLimit;
  const limiter = rateLimit ? new RateLimiter(rateLimit) : null;
  const log = config.log ?? null;
  const stripeWebhookSecret = config.stripeWebhookSecret ?? null;
  const gate = new Gate(config.maxConcurrent ?? SERVE_DEFAULTS.maxConcurrent[db.dialect]);
  const metrics = new Metrics(() => gate.queued);
  const usage = new UsageGroupCommit(db, undefined, config.backfillDays);
  const overloaded = () => new HttpError(503, 'timeout', `request not handled within ${timeoutMs} ms; retry later`, { Connection: 'close' });
  const routes = compile(ROUTES);
  const state: ServerState = { closing: false };

  async function dispatch(req: IncomingMessage, route: Route, params: Record<string, string>, query: URLSearchParams, now: number, client: Client | null): Promise<Reply> {
    let timer: NodeJS.Timeout | undefined;
    let expired = false;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        expired = true;
        // A body still arriving is the client's slowness (408); otherwise ours (503).
        reject(req.complete ? overloaded() : new HttpError(408, 'request_timeout', `request body not received within ${timeoutMs} ms`, { Connection: 'close' }));
      }, timeoutMs);
    });
    const work = async (): Promise<Reply> => {
      // Bodies are read before queueing, so a slow client never holds a slot.
      const body = route.body === 'json' ? await readJsonBody(req, bodyLimitBytes) : route.body === 'raw' ? await readBody(req, bodyLimitBytes) : undefined;
      const ctx: RouteContext = { db, req, params, query, body, client, now, maxBatch, stripeWebhookSecret, metrics, usage, backfillDays: config.backfillDays };
      if (!route.queued) return route.handle(ctx);
      // A request whose deadline passed while queued is not started at all.
      return gate.run(() => (expired ? Promise.reject(overloaded()) : route.handle(ctx)));
    };
    try {
      return await Promise.race([work(), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    metrics.requestStarted();
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const pathname = q < 0 ? url : url.slice(0, q);
    let label = 'unmatched';
    let clientId = `ip:${req.socket.remoteAddress ?? 'unknown'}`;
    let reply: Reply;
    let failure: unknown;
    const headers: Record<string, string> = {};
    try {
      const m = match(routes, method, pathname);
      if (!m) throw new HttpError(404, 'not_found', `no route ${method} ${pathname}`);
      if ('allow' in m) {
        headers.Allow = m.allow.join(', ');
        throw new HttpError(405, 'method_not_allowed', `${pathname} accepts ${m.allow.join(', ')}`);
      }
      label = m.route.path;
      const now = config.clock();
      let client: Client | null = null;
      if (m.route.auth) {
        const auth = await authenticate(req.headers, config.auth, now);
        if (auth.ok) clientId = (client = auth.client).id;
        // Failed attempts count against the caller's IP, which also slows guessing.
        const allowed = limiter ? limiter.take(clientId) : { ok: true as const };
        if (!allowed.ok) {
          headers['Retry-After'] = String(allowed.retryAfterSec);
          throw new HttpError(429, 'rate_limited', `too many requests; retry after ${allowed.retryAfterSec} s`);
        }
        if (!auth.ok) {
          headers['WWW-Authenticate'] = 'Bearer';
          throw new HttpError(401, 'unauthorized', auth.message);
        }
      }
      reply = await dispatch(req, m.route, m.params, new URLSearchParams(q < 0 ? '' : url.slice(q + 1)), now, client);
    } catch (e) {
      const err = toHttpError(e);
      if (err.status >= 500 && !(e instanceof HttpError)) failure = e;
      Object.assign(headers, err.headers);
      reply = { status: err.status, body: { error: err.code, message: err.message } };
    }
    send(res, reply, headers, state.closing);
    const seconds = (performance.now() - started) / 1000;
    metrics.observeRequest(method, label, reply.status, seconds);
    if (log) {
      const entry: Record<string, unknown> = {
        level: failure ? 'error' : 'info',
        msg: 'request',
        method,
        path: pathname,
        route: label,
        status: reply.status,
        duration_ms: Math.round(seconds * 1e6) / 1e3,
        client: clientId,
      };
      if (failure) entry.error = errorKind(failure);
      log(entry);
    }
  }

  const server = http.createServer(
    { requestTimeout: timeoutMs, headersTimeout: Math.min(timeoutMs, 60_000), keepAliveTimeout: 5_000 },
    // handle() answers every error itself; this only guards against a throwing log sink.
    (req, res) => void handle(req, res).catch(() => res.destroy()),
  );
  states.set(server, state);
  return server;
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
