import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { canonicalJson, parseForm, type FormObject, type FormValue } from './stripe-form.js';
import { OpenApiValidator } from './stripe-openapi.js';

/**
 * A stateful fake of the parts of the Stripe API that billing uses (customers, invoices,
 * invoice items, billing meters and meter events, events), for tests and local runs with
 * the real `stripe` SDK pointed at it (`STRIPE_API_BASE=http://127.0.0.1:<port>`).
 *
 * - Objects are shaped from Stripe's own fixtures (`../shared/stripe/fixtures3.json`) when
 *   that folder exists next to the repository, else from a small built-in shape.
 * - Request bodies are validated against `openapi-subset.json` when present (400
 *   `invalid_request_error` naming `param`); skipped when absent.
 * - `Idempotency-Key` works like Stripe's: a result is saved once execution begins and is
 *   replayed for the same key and parameters (`Idempotent-Replayed: true`); other parameters
 *   under the same key are a 400 `idempotency_error`; a key still executing is a 409
 *   `idempotency_key_in_use`; keys are forgotten after 24 hours of fake time.
 * - Faults are scripted per request with `inject()`.
 */

export type Fault =
  /** Answer with this status before executing anything (nothing saved under the key). */
  | { kind: 'status'; status: number; shouldRetry?: boolean; type?: string; code?: string; message?: string }
  /** Never answer: before executing (`receive`, default) or after executing and saving (`process`). */
  | { kind: 'hang'; after?: 'receive' | 'process' }
  /** Destroy the connection: before executing (default) or after executing and saving. */
  | { kind: 'reset'; after?: 'receive' | 'process' }
  /**
   * Hold the request with its key "in use" (409 to a concurrent call) until `until` settles,
   * execute, then call `onSaved`: a delay the test controls. `onHeld` says it is being held.
   */
  | { kind: 'hold'; until: Promise<unknown>; onHeld?: () => void; onSaved?: () => void }
  /** Execute and save, then await `notify` (e.g. SIGKILL the client) before answering. */
  | { kind: 'accepted'; notify: (info: AcceptedInfo) => void | Promise<void> }
  /** Answer 200 with this body, executing nothing (e.g. a search returning someone else's objects). */
  | { kind: 'canned'; body: unknown };

export interface FaultRule {
  method?: string;
  /** Exact path (no query) or a pattern; omitted: any path. */
  path?: string | RegExp;
  /** How many matching requests this rule applies to (default 1). */
  times?: number;
  fault: Fault;
}

export interface AcceptedInfo {
  method: string;
  path: string;
  idempotencyKey: string | null;
  status: number;
  body: unknown;
}

export interface LoggedRequest {
  method: string;
  path: string;
  idempotencyKey: string | null;
  params: FormObject;
  /** null when no answer was sent (hang, reset). */
  status: number | null;
  replayed: boolean;
  fault: Fault['kind'] | null;
}

export interface FakeStripeOptions {
  /**
   * Folder holding `fixtures3.json` and `openapi-subset.json`. Default: `../shared/stripe`
   * next to the repository root. `null`: use neither (built-in shapes, no validation).
   */
  sharedDir?: string | null;
  /** Fake clock in epoch ms (default: the real clock, read per request). */
  now?: number;
}

type Obj = Record<string, any>;
type PaymentOutcome = 'succeed' | 'decline';

const DAY_MS = 86_400_000;
const IDEMPOTENCY_TTL_MS = DAY_MS;

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly error: Obj,
    readonly shouldRetry: boolean | null = status >= 400 && status < 500 ? false : null,
  ) {
    super(String(error.message));
  }
}

function findRepoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

export function defaultSharedDir(): string {
  return path.join(findRepoRoot(), '..', 'shared', 'stripe');
}

const ALPHANUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
function stripeId(prefix: string): string {
  const bytes = randomBytes(14);
  let s = '';
  for (const b of bytes) s += ALPHANUM[b % ALPHANUM.length];
  return `${prefix}_${s}`;
}

function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

/** The `Stripe-Signature` header value Stripe would send for this payload. */
export function stripeSignature(payload: string, secret: string, timestampSec: number): string {
  const sig = createHmac('sha256', secret).update(`${timestampSec}.${payload}`, 'utf8').digest('hex');
  return `t=${timestampSec},v1=${sig}`;
}

function asString(v: FormValue | undefined): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function asInt(v: FormValue | undefined, param: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^-?\d+$/.test(v)) {
    throw new ApiError(400, { type: 'invalid_request_error', message: `Invalid integer: ${String(v)}`, param });
  }
  return Number(v);
}

function asMetadata(v: FormValue | undefined): Record<string, string> {
  if (v === undefined || typeof v === 'string') return {};
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) if (typeof x === 'string' && x !== '') out[k] = x;
  return out;
}

function missing(kind: string, id: string, param = 'id'): ApiError {
  return new ApiError(404, { type: 'invalid_request_error', code: 'resource_missing', param, message: `No such ${kind}: '${id}'` });
}

function invalid(message: string, param?: string, code?: string): ApiError {
  return new ApiError(400, { type: 'invalid_request_error', message, ...(param ? { param } : {}), ...(code ? { code } : {}) });
}

interface SavedResult {
  fingerprint: string;
  savedAt: number;
  inFlight: boolean;
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

type Handler = (ctx: { params: FormObject; m: RegExpExecArray; key: string | null; requestId: string; apiVersion: string | null }) => Obj;

export class FakeStripe {
  readonly requests: LoggedRequest[] = [];
  /** Every event emitted, oldest first. */
  readonly events: Obj[] = [];
  readonly validator: OpenApiValidator | null;
  /** What `invoices.pay` does when nothing is scripted for the customer. */
  defaultPaymentOutcome: PaymentOutcome = 'succeed';

  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  private readonly fixtures: Record<string, Obj>;
  private readonly rules: Array<FaultRule & { left: number }> = [];
  private readonly saved = new Map<string, SavedResult>();
  private readonly customerMap = new Map<string, Obj>();
  private readonly invoiceMap = new Map<string, Obj>();
  private readonly itemMap = new Map<string, Obj>();
  private readonly meterMap = new Map<string, Obj>();
  private readonly meterEventMap = new Map<string, Obj>();
  private readonly creditNoteMap = new Map<string, Obj>();
  private creditNoteSeq = 0;
  private readonly outcomes = new Map<string, PaymentOutcome[]>();
  private readonly routes: Array<[string, RegExp, Handler]>;
  private fixedNow: number | null;
  private invoiceSeq = 0;
  private port = 0;

  private constructor(opts: FakeStripeOptions) {
    const dir = opts.sharedDir === undefined ? defaultSharedDir() : opts.sharedDir;
    this.validator = OpenApiValidator.load(dir);
    const fixturesFile = dir ? path.join(dir, 'fixtures3.json') : null;
    this.fixtures = fixturesFile && existsSync(fixturesFile) ? (JSON.parse(readFileSync(fixturesFile, 'utf8')).resources ?? {}) : {};
    this.fixedNow = opts.now ?? null;
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: { type: 'api_error', message: `fake-stripe bug: ${(e as Error).message}` } }));
      });
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.routes = this.buildRoutes();
  }

  static async start(opts: FakeStripeOptions = {}): Promise<FakeStripe> {
    const fake = new FakeStripe(opts);
    await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
    fake.port = (fake.server.address() as AddressInfo).port;
    return fake;
  }

  /** Base URL for STRIPE_API_BASE. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Whether fixtures3.json shapes are in use. */
  get usesFixtures(): boolean {
    return Object.keys(this.fixtures).length > 0;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- clock ------------------------------------------------------------------------------

  now(): number {
    return this.fixedNow ?? Date.now();
  }

  setNow(ms: number): void {
    this.fixedNow = ms;
  }

  private nowSec(): number {
    return Math.floor(this.now() / 1000);
  }

  // ---- scripting --------------------------------------------------------------------------

  inject(rule: FaultRule): void {
    this.rules.push({ ...rule, left: rule.times ?? 1 });
  }

  /** Drop the faults not yet consumed. */
  clearFaults(): void {
    this.rules.length = 0;
  }

  /** Scripted outcomes for the next `invoices.pay` calls on this customer's invoices. */
  setPaymentOutcomes(customerId: string, outcomes: PaymentOutcome[]): void {
    this.outcomes.set(customerId, [...outcomes]);
  }

  // ---- state for assertions ---------------------------------------------------------------

  customers(): Obj[] {
    return [...this.customerMap.values()].filter((c) => !c.deleted).map(clone);
  }

  invoices(): Obj[] {
    return [...this.invoiceMap.values()].filter((i) => !i.deleted).map(clone);
  }

  invoiceItems(): Obj[] {
    return [...this.itemMap.values()].map(clone);
  }

  creditNotes(): Obj[] {
    return [...this.creditNoteMap.values()].map(clone);
  }

  meterEvents(): Obj[] {
    return [...this.meterEventMap.values()].map(clone);
  }

  customerByMetadata(key: string, value: string): Obj | null {
    return this.customers().find((c) => c.metadata?.[key] === value) ?? null;
  }

  /**
   * Change a stored invoice behind billing's back (as a dashboard edit or a bug would):
   * top-level fields, and line amounts by `metadata.billing_line_no`.
   */
  tamperInvoice(id: string, patch: { fields?: Obj; lineAmounts?: Record<string, number> }): void {
    const inv = this.invoice(id);
    Object.assign(inv, patch.fields ?? {});
    for (const [no, amount] of Object.entries(patch.lineAmounts ?? {})) {
      const line = inv.lines.data.find((l: Obj) => l.metadata?.billing_line_no === no);
      if (!line) throw new Error(`invoice ${id} has no line ${no}`);
      Object.assign(line, { amount, subtotal: amount });
    }
  }

  /** Delete a customer as the dashboard would (emits customer.deleted). */
  deleteCustomer(id: string): Obj {
    return this.doDeleteCustomer(id, null, null);
  }

  /** Append an event (as Stripe would on some state change) and return it. */
  emitEvent(type: string, object: Obj, request: { id: string | null; key: string | null } = { id: null, key: null }, apiVersion: string | null = null): Obj {
    const event = {
      ...this.shape('event'),
      id: stripeId('evt'),
      object: 'event',
      api_version: apiVersion,
      created: this.nowSec(),
      data: { object: clone(object) },
      livemode: false,
      pending_webhooks: 0,
      request: { id: request.id, idempotency_key: request.key },
      type,
    };
    this.events.push(event);
    return clone(event);
  }

  /** Payload and `Stripe-Signature` header for delivering an event to a webhook endpoint. */
  signedWebhook(event: Obj, secret: string, timestampSec = this.nowSec()): { payload: string; signature: string } {
    const payload = JSON.stringify(event, null, 2);
    return { payload, signature: stripeSignature(payload, secret, timestampSec) };
  }

  // ---- HTTP -------------------------------------------------------------------------------

  private takeFault(method: string, p: string): Fault | null {
    for (const r of this.rules) {
      if (r.left <= 0) continue;
      if (r.method && r.method.toUpperCase() !== method) continue;
      if (r.path !== undefined && (typeof r.path === 'string' ? r.path !== p : !r.path.test(p))) continue;
      r.left--;
      return r.fault;
    }
    return null;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = (req.method ?? 'GET').toUpperCase();
    const p = url.pathname;
    const params = method === 'POST' ? parseForm(body) : parseForm(url.search.slice(1));
    const key = (req.headers['idempotency-key'] as string | undefined) ?? null;
    const apiVersion = (req.headers['stripe-version'] as string | undefined) ?? null;
    const requestId = stripeId('req');
    const log: LoggedRequest = { method, path: p, idempotencyKey: key, params, status: null, replayed: false, fault: null };
    this.requests.push(log);
    res.on('error', () => {});

    const send = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
      log.status = status;
      if (res.destroyed || res.writableEnded) return;
      res.writeHead(status, { 'Content-Type': 'application/json', 'Request-Id': requestId, ...(key ? { 'Idempotency-Key': key } : {}), ...headers });
      res.end(JSON.stringify(payload));
    };
    const sendError = (e: ApiError, extra: Record<string, string> = {}) => {
      const h: Record<string, string> = { ...extra };
      if (e.shouldRetry !== null) h['Stripe-Should-Retry'] = String(e.shouldRetry);
      send(e.status, { error: { ...e.error, request_log_url: `https://dashboard.stripe.com/test/logs/${requestId}` } }, h);
    };

    const auth = req.headers.authorization ?? '';
    if (!/^Bearer sk_(test|live)_\S+$/.test(auth)) {
      sendError(new ApiError(401, { type: 'invalid_request_error', message: 'Invalid API Key provided.' }));
      return;
    }

    const fault = this.takeFault(method, p);
    log.fault = fault?.kind ?? null;
    if (fault?.kind === 'status') {
      const retry = fault.shouldRetry === undefined ? null : fault.shouldRetry;
      const type = fault.type ?? (fault.status === 429 ? 'invalid_request_error' : 'api_error');
      const code = fault.code ?? (fault.status === 429 ? 'rate_limit' : undefined);
      const message = fault.message ?? (fault.status === 429 ? 'Too many requests hit the API too quickly.' : 'An unknown error occurred.');
      sendError(new ApiError(fault.status, { type, message, ...(code ? { code } : {}) }, retry));
      return;
    }
    if (fault?.kind === 'canned') {
      send(200, fault.body);
      return;
    }
    if ((fault?.kind === 'hang' || fault?.kind === 'reset') && (fault.after ?? 'receive') === 'receive') {
      if (fault.kind === 'reset') req.socket.destroy();
      return;
    }

    let result: { status: number; body: unknown; headers: Record<string, string> };
    let replayed = false;
    const fingerprint = `${method} ${p} ${canonicalJson(params)}`;
    const prior = method === 'POST' && key ? this.savedResult(key) : null;
    if (prior) {
      if (prior.fingerprint !== fingerprint) {
        const message = `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`;
        sendError(new ApiError(400, { type: 'idempotency_error', message }));
        return;
      }
      if (prior.inFlight) {
        sendError(new ApiError(409, { type: 'invalid_request_error', code: 'idempotency_key_in_use', message: `There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): ${key}. Please try again later.` }, true));
        return;
      }
      result = { status: prior.status, body: prior.body, headers: { ...prior.headers, 'Idempotent-Replayed': 'true' } };
      replayed = true;
    } else {
      const route = this.routes.find(([m, re]) => m === method && re.test(p));
      const op = this.validator?.match(method, p) ?? null;
      if (!route) {
        sendError(new ApiError(404, { type: 'invalid_request_error', message: `Unrecognized request URL (${method}: ${p}).` }));
        return;
      }
      if (this.validator && op) {
        const err = method === 'POST' ? this.validator.validateBody(op.operation, params) : this.validator.validateQuery(op.operation, params);
        if (err) {
          sendError(new ApiError(400, { type: 'invalid_request_error', message: err.message, param: err.param, code: err.code }));
          return;
        }
      }
      // Stripe saves a result once the endpoint starts executing; until then the key is "in use".
      const slot: SavedResult | null = method === 'POST' && key ? { fingerprint, savedAt: this.now(), inFlight: true, status: 0, body: null, headers: {} } : null;
      if (slot && key) this.saved.set(key, slot);
      if (fault?.kind === 'hold') {
        fault.onHeld?.();
        await fault.until;
      }
      try {
        const m = route[1].exec(p)!;
        result = { status: 200, body: route[2]({ params, m, key, requestId, apiVersion }), headers: {} };
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        const h: Record<string, string> = {};
        if (e.shouldRetry !== null) h['Stripe-Should-Retry'] = String(e.shouldRetry);
        result = { status: e.status, body: { error: { ...e.error, request_log_url: `https://dashboard.stripe.com/test/logs/${requestId}` } }, headers: h };
      }
      if (slot) Object.assign(slot, { inFlight: false, status: result.status, body: clone(result.body), headers: result.headers });
      if (fault?.kind === 'hold') fault.onSaved?.();
    }
    log.replayed = replayed;

    if (fault?.kind === 'hang') return;
    if (fault?.kind === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'accepted') {
      await fault.notify({ method, path: p, idempotencyKey: key, status: result.status, body: clone(result.body) });
    }
    send(result.status, result.body, result.headers);
  }

  private savedResult(key: string): SavedResult | null {
    const s = this.saved.get(key);
    if (!s) return null;
    if (this.now() - s.savedAt >= IDEMPOTENCY_TTL_MS) {
      this.saved.delete(key);
      return null;
    }
    return s;
  }

  // ---- objects ----------------------------------------------------------------------------

  private shape(type: string): Obj {
    return clone(this.fixtures[type] ?? {});
  }

  private buildRoutes(): Array<[string, RegExp, Handler]> {
    const id = '([^/]+)';
    return [
      ['POST', /^\/v1\/customers$/, ({ params, requestId, key, apiVersion }) => this.createCustomer(params, { id: requestId, key }, apiVersion)],
      ['GET', /^\/v1\/customers\/search$/, ({ params }) => this.search('/v1/customers/search', this.customers(), params)],
      ['GET', /^\/v1\/customers$/, ({ params }) =>
        this.list('/v1/customers', this.customers().filter((c) => !params.email || c.email === params.email), params)],
      ['GET', new RegExp(`^/v1/customers/${id}$`), ({ m }) => this.customer(m[1])],
      ['POST', new RegExp(`^/v1/customers/${id}$`), ({ m, params }) => this.updateCustomer(m[1], params)],
      ['DELETE', new RegExp(`^/v1/customers/${id}$`), ({ m, requestId, key }) => this.doDeleteCustomer(m[1], requestId, key)],
      ['POST', /^\/v1\/invoiceitems$/, ({ params, requestId, key, apiVersion }) => this.createInvoiceItem(params, { id: requestId, key }, apiVersion)],
      ['GET', /^\/v1\/invoiceitems$/, ({ params }) =>
        this.list(
          '/v1/invoiceitems',
          this.invoiceItems().filter(
            (ii) =>
              (!params.invoice || ii.invoice === params.invoice) &&
              (!params.customer || ii.customer === params.customer) &&
              (params.pending === undefined || (params.pending === 'true') === (ii.invoice === null)),
          ),
          params,
        )],
      ['GET', new RegExp(`^/v1/invoiceitems/${id}$`), ({ m }) => this.item(m[1])],
      ['POST', /^\/v1\/invoices$/, ({ params, requestId, key, apiVersion }) => this.createInvoice(params, { id: requestId, key }, apiVersion)],
      ['GET', /^\/v1\/invoices\/search$/, ({ params }) => this.search('/v1/invoices/search', this.invoices(), params)],
      ['GET', /^\/v1\/invoices$/, ({ params }) =>
        this.list(
          '/v1/invoices',
          this.invoices().filter((inv) => (!params.customer || inv.customer === params.customer) && (!params.status || inv.status === params.status)),
          params,
        )],
      ['GET', new RegExp(`^/v1/invoices/${id}$`), ({ m }) => clone(this.invoice(m[1]))],
      ['GET', new RegExp(`^/v1/invoices/${id}/lines$`), ({ m, params }) =>
        this.list(`/v1/invoices/${m[1]}/lines`, [...this.invoice(m[1]).lines.data].reverse().map(clone), params)],
      ['DELETE', new RegExp(`^/v1/invoices/${id}$`), ({ m }) => this.deleteDraft(m[1])],
      ['POST', new RegExp(`^/v1/invoices/${id}/finalize$`), ({ m, params, requestId, key, apiVersion }) => this.finalize(m[1], params, { id: requestId, key }, apiVersion)],
      ['POST', new RegExp(`^/v1/invoices/${id}/pay$`), ({ m, params, requestId, key, apiVersion }) => this.pay(m[1], params, { id: requestId, key }, apiVersion)],
      ['POST', new RegExp(`^/v1/invoices/${id}/mark_uncollectible$`), ({ m, requestId, key, apiVersion }) =>
        this.transition(m[1], ['open'], 'uncollectible', 'marked_uncollectible_at', 'invoice.marked_uncollectible', { id: requestId, key }, apiVersion)],
      ['POST', new RegExp(`^/v1/invoices/${id}/void$`), ({ m, requestId, key, apiVersion }) =>
        this.transition(m[1], ['open', 'uncollectible'], 'void', 'voided_at', 'invoice.voided', { id: requestId, key }, apiVersion)],
      ['POST', /^\/v1\/credit_notes$/, ({ params, requestId, key, apiVersion }) => this.createCreditNote(params, { id: requestId, key }, apiVersion)],
      ['GET', /^\/v1\/credit_notes$/, ({ params }) =>
        this.list('/v1/credit_notes', this.creditNotes().filter((c) => !params.invoice || c.invoice === params.invoice), params)],
      ['POST', /^\/v1\/billing\/meters$/, ({ params }) => this.createMeter(params)],
      ['GET', /^\/v1\/billing\/meters$/, ({ params }) => this.list('/v1/billing/meters', [...this.meterMap.values()].map(clone), params)],
      ['POST', /^\/v1\/billing\/meter_events$/, ({ params }) => this.createMeterEvent(params)],
      ['GET', /^\/v1\/events$/, ({ params }) =>
        this.list(
          '/v1/events',
          this.events.filter((e) => !params.type || e.type === params.type).map(clone),
          params,
        )],
      ['GET', new RegExp(`^/v1/events/${id}$`), ({ m }) => {
        const e = this.events.find((x) => x.id === m[1]);
        if (!e) throw missing('event', m[1]);
        return clone(e);
      }],
    ];
  }

  /** Newest first, with Stripe's limit / starting_after / ending_before cursors. */
  private list(url: string, oldestFirst: Obj[], params: FormObject): Obj {
    const all = [...oldestFirst].reverse();
    const limit = Math.min(100, Math.max(1, asInt(params.limit, 'limit') ?? 10));
    const after = asString(params.starting_after);
    const before = asString(params.ending_before);
    let data: Obj[];
    let hasMore: boolean;
    if (before) {
      const idx = all.findIndex((o) => o.id === before);
      if (idx < 0) throw missing('object', before, 'ending_before');
      const newer = all.slice(0, idx);
      data = newer.slice(Math.max(0, newer.length - limit));
      hasMore = newer.length > limit;
    } else {
      let start = 0;
      if (after) {
        const idx = all.findIndex((o) => o.id === after);
        if (idx < 0) throw missing('object', after, 'starting_after');
        start = idx + 1;
      }
      data = all.slice(start, start + limit);
      hasMore = all.length > start + limit;
    }
    return { object: 'list', data, has_more: hasMore, url };
  }

  /** Search with the query forms billing uses: `metadata['k']:'v'` and `field:'v'`, joined by AND. */
  private search(url: string, objects: Obj[], params: FormObject): Obj {
    const query = asString(params.query);
    if (!query) throw invalid('Missing required param: query.', 'query', 'parameter_missing');
    const clauses = query.split(/\s+AND\s+/i).map((c) => {
      const m = /^(?:metadata\[['"](.+?)['"]\]|(\w+)):['"](.*)['"]$/.exec(c.trim());
      if (!m) throw invalid(`Invalid search query: ${c}`, 'query');
      return { meta: m[1], field: m[2], value: m[3] };
    });
    const data = objects
      .filter((o) => clauses.every((c) => (c.meta !== undefined ? o.metadata?.[c.meta] === c.value : String(o[c.field!]) === c.value)))
      .reverse();
    const limit = Math.min(100, asInt(params.limit, 'limit') ?? 10);
    return { object: 'search_result', data: data.slice(0, limit), has_more: data.length > limit, next_page: null, url };
  }

  private customer(cid: string): Obj {
    const c = this.customerMap.get(cid);
    if (!c) throw missing('customer', cid);
    return clone(c);
  }

  private liveCustomer(cid: string, param: string): Obj {
    const c = this.customerMap.get(cid);
    if (!c || c.deleted) throw missing('customer', cid, param);
    return c;
  }

  private createCustomer(params: FormObject, request: { id: string; key: string | null }, apiVersion: string | null): Obj {
    const c = {
      ...this.shape('customer'),
      id: stripeId('cus'),
      object: 'customer',
      address: null,
      balance: 0,
      created: this.nowSec(),
      currency: null,
      default_source: null,
      delinquent: false,
      description: asString(params.description) ?? null,
      discount: null,
      email: asString(params.email) ?? null,
      invoice_prefix: randomBytes(4).toString('hex').toUpperCase(),
      livemode: false,
      metadata: asMetadata(params.metadata),
      name: asString(params.name) ?? null,
      next_invoice_sequence: 1,
      phone: null,
      preferred_locales: [],
      shipping: null,
      tax_exempt: 'none',
      test_clock: null,
    };
    this.customerMap.set(c.id, c);
    this.emitEvent('customer.created', c, request, apiVersion);
    return clone(c);
  }

  private updateCustomer(cid: string, params: FormObject): Obj {
    const c = this.liveCustomer(cid, 'id');
    if (params.name !== undefined) c.name = asString(params.name) ?? null;
    if (params.metadata !== undefined) c.metadata = { ...c.metadata, ...asMetadata(params.metadata) };
    return clone(c);
  }

  private doDeleteCustomer(cid: string, requestId: string | null, key: string | null): Obj {
    const c = this.liveCustomer(cid, 'id');
    const snapshot = clone(c);
    this.customerMap.set(cid, { id: cid, object: 'customer', deleted: true });
    this.emitEvent('customer.deleted', snapshot, { id: requestId, key });
    return { id: cid, object: 'customer', deleted: true };
  }

  private invoice(iid: string, param = 'id'): Obj {
    const inv = this.invoiceMap.get(iid);
    if (!inv || inv.deleted) throw missing('invoice', iid, param);
    return inv;
  }

  /** Only a draft can be deleted; its items go with it. */
  private deleteDraft(iid: string): Obj {
    const inv = this.invoice(iid);
    if (inv.status !== 'draft') throw invalid(`You can only delete draft invoices; ${iid} is ${inv.status}.`, undefined, 'invoice_unexpected_state');
    for (const [k, ii] of this.itemMap) if (ii.invoice === iid) this.itemMap.delete(k);
    this.invoiceMap.set(iid, { id: iid, object: 'invoice', deleted: true });
    return { id: iid, object: 'invoice', deleted: true };
  }

  private item(iid: string): Obj {
    const ii = this.itemMap.get(iid);
    if (!ii) throw missing('invoiceitem', iid);
    return clone(ii);
  }

  private createInvoice(params: FormObject, request: { id: string; key: string | null }, apiVersion: string | null): Obj {
    const customerId = asString(params.customer);
    if (!customerId) throw invalid('Missing required param: customer.', 'customer', 'parameter_missing');
    const customer = this.liveCustomer(customerId, 'customer');
    const created = this.nowSec();
    const collection = asString(params.collection_method) ?? 'charge_automatically';
    const daysUntilDue = asInt(params.days_until_due, 'days_until_due');
    if (collection === 'send_invoice' && daysUntilDue === undefined && params.due_date === undefined) {
      throw invalid('Missing required param: days_until_due.', 'days_until_due', 'parameter_missing');
    }
    const inv: Obj = {
      ...this.shape('invoice'),
      id: stripeId('in'),
      object: 'invoice',
      account_name: null,
      amount_due: 0,
      amount_overpaid: 0,
      amount_paid: 0,
      amount_remaining: 0,
      amount_shipping: 0,
      attempt_count: 0,
      attempted: false,
      auto_advance: params.auto_advance === undefined ? true : params.auto_advance === 'true',
      automatically_finalizes_at: null,
      billing_reason: 'manual',
      collection_method: collection,
      created,
      currency: (asString(params.currency) ?? customer.currency ?? 'usd').toLowerCase(),
      customer: customerId,
      customer_email: customer.email,
      customer_name: customer.name,
      description: asString(params.description) ?? null,
      discounts: [],
      due_date: daysUntilDue !== undefined ? created + daysUntilDue * 86_400 : (asInt(params.due_date, 'due_date') ?? null),
      effective_at: null,
      ending_balance: null,
      from_invoice: null,
      hosted_invoice_url: null,
      invoice_pdf: null,
      last_finalization_error: null,
      latest_revision: null,
      lines: { object: 'list', data: [], has_more: false, url: '' },
      livemode: false,
      metadata: asMetadata(params.metadata),
      next_payment_attempt: null,
      number: null,
      parent: null,
      period_end: created,
      period_start: created,
      post_payment_credit_notes_amount: 0,
      pre_payment_credit_notes_amount: 0,
      receipt_number: null,
      shipping_cost: null,
      shipping_details: null,
      starting_balance: 0,
      status: 'draft',
      status_transitions: { finalized_at: null, marked_uncollectible_at: null, paid_at: null, voided_at: null },
      subscription: null,
      subtotal: 0,
      subtotal_excluding_tax: 0,
      test_clock: null,
      total: 0,
      total_discount_amounts: [],
      total_excluding_tax: 0,
      total_pretax_credit_amounts: [],
      total_taxes: [],
      webhooks_delivered_at: null,
    };
    inv.lines.url = `/v1/invoices/${inv.id}/lines`;
    this.invoiceMap.set(inv.id, inv);
    if (asString(params.pending_invoice_items_behavior) === 'include') {
      for (const ii of this.itemMap.values()) {
        if (ii.customer === customerId && ii.invoice === null && ii.currency === inv.currency) this.attach(inv, ii);
      }
    }
    this.emitEvent('invoice.created', inv, request, apiVersion);
    return clone(inv);
  }

  private attach(inv: Obj, ii: Obj): void {
    ii.invoice = inv.id;
    inv.lines.data.push({
      ...this.shape('line_item'),
      id: stripeId('il'),
      object: 'line_item',
      amount: ii.amount,
      currency: ii.currency,
      description: ii.description,
      discount_amounts: [],
      discountable: true,
      discounts: [],
      invoice: inv.id,
      livemode: false,
      metadata: clone(ii.metadata),
      parent: {
        type: 'invoice_item_details',
        invoice_item_details: { invoice_item: ii.id, proration: false, proration_details: { credited_items: null }, subscription: null },
        subscription_item_details: null,
      },
      period: clone(ii.period),
      pretax_credit_amounts: [],
      pricing: null,
      quantity: 1,
      quantity_decimal: '1',
      subtotal: ii.amount,
      taxes: [],
    });
    const total = inv.lines.data.reduce((s: number, l: Obj) => s + Number(l.amount), 0);
    Object.assign(inv, { subtotal: total, subtotal_excluding_tax: total, total, total_excluding_tax: total, amount_due: total, amount_remaining: total });
  }

  private createInvoiceItem(params: FormObject, request: { id: string; key: string | null }, apiVersion: string | null): Obj {
    const customerId = asString(params.customer);
    if (!customerId) throw invalid('Missing required param: customer.', 'customer', 'parameter_missing');
    this.liveCustomer(customerId, 'customer');
    const amount = asInt(params.amount, 'amount');
    if (amount === undefined) throw invalid('Missing required param: amount.', 'amount', 'parameter_missing');
    const currencyRaw = asString(params.currency);
    if (!currencyRaw) throw invalid('Missing required param: currency.', 'currency', 'parameter_missing');
    const currency = currencyRaw.toLowerCase();
    const invoiceId = asString(params.invoice) ?? null;
    let inv: Obj | null = null;
    if (invoiceId) {
      inv = this.invoice(invoiceId, 'invoice');
      if (inv.status !== 'draft') throw invalid(`You can only add invoice items to draft invoices; invoice ${invoiceId} is ${inv.status}.`, 'invoice', 'invoice_not_editable');
      if (inv.customer !== customerId) throw invalid(`Invoice ${invoiceId} belongs to another customer.`, 'invoice');
      if (inv.currency !== currency) throw invalid(`The currency of this invoice item (${currency}) does not match the invoice currency (${inv.currency}).`, 'currency');
    }
    const period = typeof params.period === 'object' ? params.period : null;
    const created = this.nowSec();
    const ii: Obj = {
      ...this.shape('invoiceitem'),
      id: stripeId('ii'),
      object: 'invoiceitem',
      amount,
      currency,
      customer: customerId,
      date: created,
      description: asString(params.description) ?? null,
      discountable: true,
      discounts: [],
      invoice: null,
      livemode: false,
      metadata: asMetadata(params.metadata),
      net_amount: amount,
      parent: null,
      period: period
        ? { start: asInt(period.start, 'period[start]'), end: asInt(period.end, 'period[end]') }
        : { start: created, end: created },
      pricing: null,
      proration: false,
      quantity: 1,
      quantity_decimal: '1',
      tax_rates: [],
      test_clock: null,
    };
    this.itemMap.set(ii.id, ii);
    if (inv) this.attach(inv, ii);
    this.emitEvent('invoiceitem.created', ii, request, apiVersion);
    return clone(ii);
  }

  private finalize(iid: string, params: FormObject, request: { id: string; key: string | null }, apiVersion: string | null): Obj {
    const inv = this.invoice(iid);
    if (inv.status !== 'draft') {
      throw invalid(`This invoice is already finalized, you can't re-finalize a non-draft invoice.`, undefined, 'invoice_unexpected_state');
    }
    const customer = this.customerMap.get(inv.customer);
    this.invoiceSeq++;
    const t = this.nowSec();
    Object.assign(inv, {
      status: 'open',
      number: `${customer?.invoice_prefix ?? 'FAKE'}-${String(this.invoiceSeq).padStart(4, '0')}`,
      effective_at: t,
      hosted_invoice_url: `https://invoice.stripe.com/i/${inv.id}`,
      invoice_pdf: `https://pay.stripe.com/invoice/${inv.id}/pdf`,
    });
    if (params.auto_advance !== undefined) inv.auto_advance = params.auto_advance === 'true';
    inv.status_transitions.finalized_at = t;
    this.emitEvent('invoice.finalized', inv, request, apiVersion);
    // Like Stripe, an invoice with nothing to collect is paid on finalization.
    if (inv.amount_due === 0) this.markPaid(inv, request, apiVersion);
    return clone(inv);
  }

  private markPaid(inv: Obj, request: { id: string; key: string | null }, apiVersion: string | null): void {
    Object.assign(inv, { status: 'paid', amount_paid: inv.amount_due, amount_remaining: 0, next_payment_attempt: null });
    inv.status_transitions.paid_at = this.nowSec();
    this.emitEvent('invoice.paid', inv, request, apiVersion);
    this.emitEvent('invoice.payment_succeeded', inv, request, apiVersion);
  }

  private pay(iid: string, params: FormObject, request: { id: string; key: string | null }, apiVersion: string | null): Obj {
    const inv = this.invoice(iid);
    if (inv.status === 'draft') this.finalize(iid, {}, request, apiVersion);
    if (inv.status === 'paid') throw invalid('Invoice is already paid', undefined, 'invoice_already_paid');
    // Like Stripe, an uncollectible invoice can still be paid.
    if (inv.status !== 'open' && inv.status !== 'uncollectible') throw invalid(`This invoice can no longer be paid: it is ${inv.status}.`, undefined, 'invoice_not_payable');
    if (params.paid_out_of_band === 'true') {
      this.markPaid(inv, request, apiVersion);
      return clone(inv);
    }
    const queue = this.outcomes.get(inv.customer);
    const outcome = queue && queue.length > 0 ? queue.shift()! : this.defaultPaymentOutcome;
    inv.attempt_count += 1;
    inv.attempted = true;
    if (outcome === 'decline') {
      this.emitEvent('invoice.payment_failed', inv, request, apiVersion);
      throw new ApiError(402, { type: 'card_error', code: 'card_declined', decline_code: 'generic_decline', message: 'Your card was declined.' }, false);
    }
    this.markPaid(inv, request, apiVersion);
    return clone(inv);
  }

  private transition(iid: string, from: string[], to: string, stamp: string, eventType: string, request: { id: string; key: string | null }, apiVersion: string | null): Obj {
    const inv = this.invoice(iid);
    if (!from.includes(inv.status)) throw invalid(`You cannot move invoice ${iid} from ${inv.status} to ${to}.`, undefined, 'invoice_unexpected_state');
    inv.status = to;
    inv.status_transitions[stamp] = this.nowSec();
    this.emitEvent(eventType, inv, request, apiVersion);
    return clone(inv);
  }

  /**
   * Stripe's rules for a credit note by amount: an open invoice's amount_due (and remaining)
   * drop by it, never below zero, and a note leaving nothing due settles the invoice; on a
   * paid invoice amount_due stays and refund + credit + out-of-band amounts must add up to it,
   * within what was paid and not yet credited. Parameters are checked by hand: the OpenAPI
   * subset has no /v1/credit_notes.
   */
  private createCreditNote(params: FormObject, request: { id: string; key: string | null }, apiVersion: string | null): Obj {
    const known = ['amount', 'credit_amount', 'effective_at', 'email_type', 'expand', 'invoice', 'lines', 'memo', 'metadata', 'out_of_band_amount', 'reason', 'refund_amount', 'refunds', 'shipping_cost'];
    for (const k of Object.keys(params)) if (!known.includes(k)) throw invalid(`Received unknown parameter: ${k}`, k);
    const iid = asString(params.invoice);
    if (!iid) throw invalid('Missing required param: invoice.', 'invoice', 'parameter_missing');
    const reason = asString(params.reason);
    const reasons = ['duplicate', 'fraudulent', 'order_change', 'product_unsatisfactory'];
    if (reason !== undefined && !reasons.includes(reason)) throw invalid(`Invalid reason: must be one of ${reasons.join(', ')}`, 'reason');
    const inv = this.invoice(iid, 'invoice');
    const amount = asInt(params.amount, 'amount');
    if (amount === undefined) throw invalid('Missing required param: amount.', 'amount', 'parameter_missing');
    if (amount <= 0) throw invalid('The credit note amount must be positive.', 'amount');
    const refund = asInt(params.refund_amount, 'refund_amount') ?? 0;
    const credit = asInt(params.credit_amount, 'credit_amount') ?? 0;
    const outOfBand = asInt(params.out_of_band_amount, 'out_of_band_amount') ?? 0;
    if (inv.status === 'open') {
      if (refund + credit + outOfBand > 0) throw invalid('refund_amount, credit_amount and out_of_band_amount apply to paid invoices only.', 'refund_amount');
      if (amount > inv.amount_remaining) throw invalid(`The credit note amount (${amount}) exceeds the invoice's amount remaining (${inv.amount_remaining}).`, 'amount');
    } else if (inv.status === 'paid') {
      if (refund + credit + outOfBand !== amount) throw invalid(`refund_amount + credit_amount + out_of_band_amount must equal the credit note amount (${amount}).`, 'amount');
      if (amount > inv.amount_paid - inv.post_payment_credit_notes_amount) throw invalid(`The credit note amount (${amount}) exceeds what is left to credit on invoice ${iid}.`, 'amount');
    } else {
      throw invalid(`You can only create credit notes on open or paid invoices; ${iid} is ${inv.status}.`, 'invoice', 'invoice_unexpected_state');
    }
    this.creditNoteSeq++;
    const note: Obj = {
      ...this.shape('credit_note'),
      id: stripeId('cn'),
      object: 'credit_note',
      amount,
      amount_shipping: 0,
      created: this.nowSec(),
      currency: inv.currency,
      customer: inv.customer,
      customer_balance_transaction: credit > 0 ? stripeId('cbtxn') : null,
      discount_amount: 0,
      discount_amounts: [],
      effective_at: this.nowSec(),
      invoice: iid,
      lines: { object: 'list', data: [], has_more: false, url: '' },
      livemode: false,
      memo: asString(params.memo) ?? null,
      metadata: asMetadata(params.metadata),
      number: `${inv.number ?? 'FAKE'}-CN-${String(this.creditNoteSeq).padStart(2, '0')}`,
      out_of_band_amount: outOfBand || null,
      pre_payment_amount: inv.status === 'open' ? amount : 0,
      post_payment_amount: inv.status === 'paid' ? amount : 0,
      reason: reason ?? null,
      refunds: refund > 0 ? [{ amount_refunded: refund, refund: stripeId('re') }] : [],
      status: 'issued',
      subtotal: amount,
      subtotal_excluding_tax: amount,
      total: amount,
      total_excluding_tax: amount,
      type: inv.status === 'open' ? 'pre_payment' : 'post_payment',
      voided_at: null,
    };
    this.creditNoteMap.set(note.id, note);
    if (inv.status === 'open') {
      inv.amount_due -= amount;
      inv.amount_remaining -= amount;
      inv.pre_payment_credit_notes_amount += amount;
    } else {
      inv.post_payment_credit_notes_amount += amount;
    }
    this.emitEvent('credit_note.created', note, request, apiVersion);
    if (inv.status === 'open' && inv.amount_remaining === 0) this.markPaid(inv, request, apiVersion);
    return clone(note);
  }

  private createMeter(params: FormObject): Obj {
    const eventName = asString(params.event_name);
    if (!eventName) throw invalid('Missing required param: event_name.', 'event_name', 'parameter_missing');
    if ([...this.meterMap.values()].some((m) => m.event_name === eventName && m.status === 'active')) {
      throw invalid(`An active meter with event_name ${eventName} already exists.`, 'event_name');
    }
    const agg = typeof params.default_aggregation === 'object' ? asString(params.default_aggregation.formula) : undefined;
    const t = this.nowSec();
    const meter = {
      ...this.shape('billing.meter'),
      id: stripeId('mtr'),
      object: 'billing.meter',
      created: t,
      customer_mapping: { event_payload_key: 'stripe_customer_id', type: 'by_id' },
      default_aggregation: { formula: agg ?? 'sum' },
      display_name: asString(params.display_name) ?? eventName,
      event_name: eventName,
      event_time_window: null,
      livemode: false,
      status: 'active',
      status_transitions: { deactivated_at: null },
      updated: t,
      value_settings: { event_payload_key: 'value' },
    };
    this.meterMap.set(meter.id, meter);
    return clone(meter);
  }

  private createMeterEvent(params: FormObject): Obj {
    const eventName = asString(params.event_name);
    if (!eventName) throw invalid('Missing required param: event_name.', 'event_name', 'parameter_missing');
    const payload = typeof params.payload === 'object' ? (params.payload as Record<string, string>) : null;
    if (!payload) throw invalid('Missing required param: payload.', 'payload', 'parameter_missing');
    if (!payload.stripe_customer_id) throw invalid('Missing required param: payload[stripe_customer_id].', 'payload[stripe_customer_id]', 'parameter_missing');
    if (payload.value === undefined || !/^\d+$/.test(payload.value)) {
      throw invalid(`Invalid payload[value]: must be a whole number, got ${String(payload.value)}`, 'payload[value]');
    }
    const nowSec = this.nowSec();
    const timestamp = asInt(params.timestamp, 'timestamp') ?? nowSec;
    if (timestamp < nowSec - 35 * 86_400 || timestamp > nowSec + 300) {
      throw invalid('Timestamp must be within the past 35 calendar days and no more than 5 minutes in the future.', 'timestamp');
    }
    const identifier = asString(params.identifier) ?? stripeId('mev');
    if (this.meterEventMap.has(identifier)) {
      throw invalid(`An event already exists with identifier ${identifier}.`, 'identifier');
    }
    const event = {
      ...this.shape('billing.meter_event'),
      object: 'billing.meter_event',
      created: nowSec,
      event_name: eventName,
      identifier,
      livemode: false,
      payload: { ...payload },
      timestamp,
    };
    this.meterEventMap.set(identifier, event);
    return clone(event);
  }
}
