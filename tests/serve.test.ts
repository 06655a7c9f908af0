import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { applyCatalog } from '../src/catalog/apply.js';
import { setQuota } from '../src/subscriptions/quota.js';
import type { ServeConfig } from '../src/serve/config.js';
import { createServer, stopServer } from '../src/serve/server.js';
import type { Db } from '../src/storage/db.js';
import { asText } from '../src/storage/sql.js';
import { subscribe } from '../src/subscriptions/lifecycle.js';
import { createTenant } from '../src/subscriptions/tenants.js';
import { grantCredit } from '../src/subscriptions/credits.js';
import { BIN } from './helpers/cli.js';
import { describeEachDb } from './helpers/db.js';

const START = Date.parse('2026-01-01T00:00:00Z');
const NOW = Date.parse('2026-01-15T12:00:00Z');
const SECRETS = ['svc-secret-old-0123456789', 'svc-secret-new-0123456789'];
const JWT_SECRET = 'jwt-secret-0123456789';
const SVC = { 'x-service-secret': SECRETS[1] };

const CATALOG = {
  features: [
    { key: 'API_CALL', name: 'API calls', unit: 'call', aggregation: 'sum' },
    { key: 'OCR_SCAN', name: 'OCR scans', unit: 'scan', aggregation: 'sum' },
  ],
  plans: [
    {
      key: 'starter',
      name: 'Starter',
      currency: 'USD',
      price: '29.00',
      interval: 'month',
      features: {
        API_CALL: { included: 10, hardStop: true },
        OCR_SCAN: { included: 50, overage: { model: 'per_unit', unitPrice: '0.05' } },
      },
    },
  ],
};

async function seed(db: Db): Promise<void> {
  const opts = { now: START, actor: 'test' };
  await applyCatalog(db, CATALOG, opts);
  for (const id of ['acme', 'globex']) {
    await createTenant(db, { id }, opts);
    await subscribe(db, { tenantId: id, planKey: 'starter', start: START }, opts);
  }
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
function jwt(claims: Record<string, unknown>, secret = JWT_SECRET, alg = 'HS256'): string {
  const data = `${b64({ alg, typ: 'JWT' })}.${b64(claims)}`;
  return `${data}.${createHmac('sha256', secret).update(data).digest('base64url')}`;
}
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

interface Res {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any;
}

function call(port: number, method: string, path: string, opts: { body?: unknown; raw?: string | Buffer; headers?: Record<string, string> } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const payload = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: { 'content-type': 'application/json', ...opts.headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const servers: http.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => stopServer(s, 1000)));
});

async function start(db: Db, extra: Partial<ServeConfig> = {}) {
  const logs: Array<Record<string, unknown>> = [];
  const server = createServer(db, {
    auth: { serviceSecrets: SECRETS, jwt: { hmacSecret: JWT_SECRET } },
    clock: () => NOW,
    rateLimit: null,
    log: (e) => logs.push(e),
    ...extra,
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return { server, port, logs, call: (method: string, path: string, opts?: Parameters<typeof call>[3]) => call(port, method, path, opts) };
}

async function recordedUnits(db: Db, tenantId: string, featureKey: string): Promise<string> {
  const [r] = await db.knex('usage_events').where({ tenant_id: tenantId, feature_key: featureKey }).select(asText(db, 'COALESCE(SUM(quantity), 0)').wrap('(', ') as total'));
  return String(r.total);
}

const CHECK = '/v1/billing/entitlements/check';
const USAGE = '/v1/billing/usage';
const CONSUME = '/v1/billing/entitlements/consume';

function event(n: number, extra: Record<string, unknown> = {}) {
  return { tenantId: 'acme', usageType: 'OCR_SCAN', quantity: 1, sourceService: 'ocr', sourceEntityId: `doc-${n}`, ...extra };
}

describeEachDb('billing serve', (t) => {
  it('answers health without credentials and reports the database', async () => {
    const { db } = t();
    const s = await start(db);
    const r = await s.call('GET', '/health');
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ status: 'ok', service: 'billing', timestamp: new Date(NOW).toISOString(), database: 'ok' });
    const m = await s.call('GET', '/nope');
    expect(m.status).toBe(404);
    const wrongMethod = await s.call('GET', CHECK, { headers: SVC });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.allow).toBe('POST');
  });

  it('checks entitlements like billing check: allowed, denied, unknown tenant, bad body', async () => {
    const { db } = t();
    await seed(db);
    const s = await start(db);
    const ok = await s.call('POST', CHECK, { headers: SVC, body: { tenantId: 'acme', usageType: 'API_CALL', quantity: 4 } });
    expect(ok.status).toBe(200);
    expect(ok.json).toMatchObject({ allowed: true, reason: 'within_plan', hardStop: true, used: '0', remaining: '10' });
    const tooMany = await s.call('POST', CHECK, { headers: SVC, body: { tenantId: 'acme', featureId: 'API_CALL', quantity: '11' } });
    expect(tooMany.status).toBe(200);
    expect(tooMany.json).toMatchObject({ allowed: false, reason: 'limit_reached' });
    const unknownTenant = await s.call('POST', CHECK, { headers: SVC, body: { tenantId: 'nobody', usageType: 'API_CALL' } });
    expect(unknownTenant.status).toBe(404);
    expect(unknownTenant.json).toMatchObject({ allowed: false, reason: 'unknown_tenant' });
    const unknownFeature = await s.call('POST', CHECK, { headers: SVC, body: { tenantId: 'acme', usageType: 'NOPE' } });
    expect(unknownFeature.json).toMatchObject({ allowed: false, reason: 'unknown_feature' });
    const missing = await s.call('POST', CHECK, { headers: SVC, body: { tenantId: 'acme' } });
    expect(missing.status).toBe(400);
    expect(missing.json.message).toMatch(/usageType/);
    const notObject = await s.call('POST', CHECK, { headers: SVC, body: [1, 2] });
    expect(notObject.status).toBe(400);
  });

  it('refuses missing or invalid credentials with 401 and a token for another tenant with 403', async () => {
    const { db } = t();
    await seed(db);
    const s = await start(db);
    const body = { tenantId: 'acme', usageType: 'API_CALL' };
    const exp = Math.floor(NOW / 1000) + 600;
    const cases: Array<[string, Record<string, string>]> = [
      ['no credentials', {}],
      ['bad secret', { 'x-service-secret': 'guess' }],
      ['bad signature', bearer(jwt({ tenant_id: 'acme', exp }, 'wrong-secret'))],
      ['expired', bearer(jwt({ tenant_id: 'acme', exp: Math.floor(NOW / 1000) - 3600 }))],
      ['alg none', bearer(`${b64({ alg: 'none' })}.${b64({ tenant_id: 'acme', exp })}.`)],
      ['not bearer', { authorization: 'Basic YWRtaW46YWRtaW4=' }],
    ];
    for (const [name, headers] of cases) {
      const r = await s.call('POST', CHECK, { headers, body });
      expect(r.status, name).toBe(401);
      expect(r.json.error, name).toBe('unauthorized');
    }
    expect((await s.call('POST', CHECK, { headers: { 'x-service-secret': SECRETS[0] }, body })).status).toBe(200);

    const acmeToken = bearer(jwt({ sub: 'svc-a', tenant_id: 'acme', exp }));
    expect((await s.call('POST', CHECK, { headers: acmeToken, body })).status).toBe(200);
    const other = await s.call('POST', CHECK, { headers: acmeToken, body: { ...body, tenantId: 'globex' } });
    expect(other.status).toBe(403);
    expect((await s.call('POST', USAGE, { headers: acmeToken, body: [event(1), event(2, { tenantId: 'globex' })] })).status).toBe(403);
    expect((await s.call('GET', `${USAGE}/globex`, { headers: acmeToken })).status).toBe(403);
    expect(await recordedUnits(db, 'acme', 'OCR_SCAN')).toBe('0');

    // Access log: one line per request, with the client but never the credentials.
    const text = JSON.stringify(s.logs);
    for (const secret of [...SECRETS, JWT_SECRET, acmeToken.authorization.slice(7)]) expect(text).not.toContain(secret);
    expect(s.logs.find((l) => l.client === 'jwt:svc-a')).toMatchObject({ method: 'POST', path: CHECK, status: 200 });
    expect(s.logs.every((l) => typeof l.duration_ms === 'number')).toBe(true);
  });

  it('refuses impossible and out-of-range times from a tenant\'s own JWT, and billing goes on', async () => {
    const { db } = t();
    await seed(db);
    const s = await start(db);
    const headers = bearer(jwt({ sub: 'acme-app', tenant_id: 'acme', exp: Math.floor(NOW / 1000) + 600 }));
    const times = [-8640000000000001, -1e17, '2026-02-30T10:00:00Z', '2025-02-29', '0000-01-01T00:00:00Z', '1900-01-01T00:00:00Z', '2026-01-10T00:00:00Z'];
    const r = await s.call('POST', USAGE, { headers, body: times.map((time, i) => event(i, { time })) });
    expect(r.json.results.map((x: { status: string; field?: string }) => `${x.status}${x.field ? ` ${x.field}` : ''}`)).toEqual([
      ...Array(6).fill('rejected occurredAt'),
      'inserted',
    ]);
    const [min] = await db.knex('usage_events').min({ t: 'occurred_at' });
    expect(Number(min.t)).toBe(Date.parse('2026-01-10T00:00:00Z'));
  });

  it('records usage once per idempotency key and answers each event of a mixed batch', async () => {
    const { db } = t();
    await seed(db);
    const s = await start(db);
    const first = await s.call('POST', USAGE, { headers: SVC, body: event(1, { quantity: '2.5' }) });
    expect(first.status).toBe(200);
    expect(first.json).toMatchObject({ inserted: 1, duplicates: 0, rejected: 0, results: [{ status: 'inserted' }] });
    const again = await s.call('POST', USAGE, { headers: SVC, body: event(1, { quantity: '2.5' }) });
    expect(again.json.results[0]).toEqual({ status: 'duplicate', idempotencyKey: first.json.results[0].idempotencyKey });

    const batch = [
      event(2),
      event(1, { quantity: '2.5' }), // duplicate of the first call
      event(3, { usageType: 'NOPE' }),
      event(4, { quantity: -1 }),
      'not an event',
      event(5, { tenantId: undefined }),
      event(6, { metadata: [1] }),
      { ...event(7), event_id: 'evt-7', timestamp: '2026-01-15T11:00:00Z' },
    ];
    const r = await s.call('POST', USAGE, { headers: SVC, body: batch });
    expect(r.status).toBe(200);
    expect(r.json.results.map((x: { status: string }) => x.status)).toEqual([
      'inserted', 'duplicate', 'rejected', 'rejected', 'rejected', 'rejected', 'rejected', 'inserted',
    ]);
    expect(r.json).toMatchObject({ inserted: 2, duplicates: 1, rejected: 5 });
    for (const bad of r.json.results.filter((x: { status: string }) => x.status === 'rejected')) {
      expect(bad.field).toEqual(expect.any(String));
      expect(bad.reason).toEqual(expect.any(String));
    }
    expect(await recordedUnits(db, 'acme', 'OCR_SCAN')).toBe(String(4_500_000)); // 2.5 + 1 + 1 in micro-units

    const single = await s.call('POST', USAGE, { headers: SVC, body: event(9, { quantity: 'abc' }) });
    expect(single.status).toBe(422);
    expect(single.json.results[0]).toMatchObject({ status: 'rejected', field: expect.any(String) });

    const tooMany = await s.call('POST', USAGE, { headers: SVC, body: Array.from({ length: 1001 }, (_, i) => event(100 + i)) });
    expect(tooMany.status).toBe(413);
    expect(tooMany.json.error).toBe('batch_too_large');
    expect((await s.call('POST', USAGE, { headers: SVC, body: [] })).status).toBe(400);
  });

  it('consumes: records when allowed, answers denied, rejected and unknown tenant', async () => {
    const { db } = t();
    await seed(db);
    const s = await start(db);
    const api = (extra: Record<string, unknown>) => ({ ...event(1, { usageType: 'API_CALL' }), ...extra });
    const ok = await s.call('POST', CONSUME, { headers: SVC, body: api({ quantity: 10 }) });
    expect(ok.status).toBe(200);
    expect(ok.json).toMatchObject({ status: 'inserted', idempotencyKey: expect.any(String), allowed: true, used: '0', remaining: '10' });
    const denied = await s.call('POST', CONSUME, { headers: SVC, body: api({ id: 'other', quantity: 1 }) });
    expect(denied.json).toMatchObject({ status: 'denied', allowed: false, reason: 'limit_reached', used: '10', remaining: '0' });
    const future = await s.call('POST', CONSUME, { headers: SVC, body: { ...event(2), timestamp: '2026-01-16T00:00:00Z' } });
    expect(future.status).toBe(422);
    expect(future.json).toMatchObject({ status: 'rejected', rejection: { field: 'occurredAt', reason: expect.stringMatching(/future/) } });
    const nobody = await s.call('POST', CONSUME, { headers: SVC, body: { ...event(3), tenantId: 'nobody' } });
    expect(nobody.status).toBe(404);
    expect(nobody.json).toMatchObject({ status: 'denied', reason: 'unknown_tenant' });
    expect(await recordedUnits(db, 'acme', 'API_CALL')).toBe('10000000');
    expect(await recordedUnits(db, 'acme', 'OCR_SCAN')).toBe('0');
  });

  it('consumes in parallel up to an overridden included, where a defaulted hard-stop limit now stops', async () => {
    const { db } = t();
    await seed(db);
    // API_CALL: included 10 with a hard stop; the tenant pays for 20.
    await setQuota(db, { tenantId: 'acme', featureKey: 'API_CALL', included: '20' }, { now: START, actor: 'test' });
    const s = await start(db);
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => s.call('POST', CONSUME, { headers: SVC, body: { ...event(i), usageType: 'API_CALL', quantity: 1 } })),
    );
    const statuses = results.map((r) => r.json.status);
    expect([statuses.filter((x) => x === 'inserted').length, statuses.filter((x) => x === 'denied').length]).toEqual([20, 30]);
    expect(await recordedUnits(db, 'acme', 'API_CALL')).toBe('20000000');
  });

  it('answers consume, check and usage bodies with a missing or non-string tenantId/usageType/quantity with 400 or 422, never 500', async () => {
    const { db } = t();
    await seed(db);
    const s = await start(db);
    const bad: Array<[string, Record<string, unknown>]> = [
      ['missing tenantId', { usageType: 'API_CALL', quantity: 1 }],
      ['object tenantId', { tenantId: { $gt: '' }, usageType: 'API_CALL', quantity: 1 }],
      ['array tenantId', { tenantId: ['acme'], usageType: 'API_CALL', quantity: 1 }],
      ['empty tenantId', { tenantId: '', usageType: 'API_CALL', quantity: 1 }],
      ['array usageType', { tenantId: 'acme', usageType: ['API_CALL'], quantity: 1 }],
      ['object usageType', { tenantId: 'acme', usageType: { a: 1 }, quantity: 1 }],
      ['object quantity', { tenantId: 'acme', usageType: 'API_CALL', quantity: { n: 1 } }],
      ['array quantity', { tenantId: 'acme', usageType: 'API_CALL', quantity: [1] }],
    ];
    for (const [name, body] of bad) {
      const full = { sourceService: 'svc', sourceEntityId: `e-${name}`, ...body };
      const consumed = await s.call('POST', CONSUME, { headers: SVC, body: full });
      const checked = await s.call('POST', CHECK, { headers: SVC, body: full });
      expect([consumed.status, consumed.json.error], name).toEqual([400, 'invalid_body']);
      expect(consumed.json, name).toEqual(checked.json);
      const enforced = await s.call('POST', USAGE, { headers: SVC, body: { ...full, enforce: true } });
      expect(enforced.status, name).toBe(400);
      const recorded = await s.call('POST', USAGE, { headers: SVC, body: full });
      expect(recorded.status, name).toBe(422);
    }
    expect(await recordedUnits(db, 'acme', 'API_CALL')).toBe('0');
    expect(s.logs.filter((l) => l.status === 500)).toEqual([]);
  });

  it('rejects an empty quantity (null or "") like ingest does, while a missing one counts 1', async () => {
    const { db } = t();
    await seed(db);
    const s = await start(db);
    for (const [name, quantity] of [['null', null], ['empty', ''], ['blank', '  ']] as const) {
      const body = { tenantId: 'acme', usageType: 'API_CALL', quantity, sourceService: 'svc', sourceEntityId: `q-${name}` };
      const recorded = await s.call('POST', USAGE, { headers: SVC, body });
      expect(recorded.status, name).toBe(422);
      expect(recorded.json.results[0], name).toEqual({ status: 'rejected', field: 'quantity', reason: 'is empty (leave the field out for the default 1)' });
      const consumed = await s.call('POST', CONSUME, { headers: SVC, body });
      expect([consumed.status, consumed.json.message], name).toEqual([400, 'quantity is empty (leave it out for the default 1)']);
    }
    expect(await recordedUnits(db, 'acme', 'API_CALL')).toBe('0');
    const absent = await s.call('POST', USAGE, { headers: SVC, body: { tenantId: 'acme', usageType: 'API_CALL', sourceService: 'svc', sourceEntityId: 'q-absent' } });
    expect(absent.status).toBe(200);
    expect(await recordedUnits(db, 'acme', 'API_CALL')).toBe('1000000');
  });

  it('logs an unexpected database failure by kind and code, never its SQL or the submitted values', async () => {
    const { db } = t();
    await seed(db);
    const s = await start(db);
    await db.knex.schema.dropTable('usage_events');
    const r = await s.call('POST', CONSUME, { headers: SVC, body: event(1, { usageType: 'API_CALL', sourceEntityId: 'doc-SENTINEL-42' }) });
    expect(r.status).toBe(500);
    expect(r.json).toEqual({ error: 'internal', message: 'internal error' });
    const entry = s.logs.find((l) => l.status === 500)!;
    expect(entry).toMatchObject({ level: 'error', path: CONSUME, error: expect.any(String) });
    expect(JSON.stringify(s.logs)).not.toMatch(/select|insert|usage_events|SENTINEL|acme/i);
  });

  it('refuses oversized (413) and malformed (400) bodies and keeps serving', async () => {
    const { db } = t();
    await seed(db);
    const s = await start(db, { bodyLimitBytes: 1024 });
    const big = JSON.stringify({ tenantId: 'acme', usageType: 'API_CALL', pad: 'x'.repeat(4000) });
    const declared = await s.call('POST', CHECK, { headers: SVC, raw: big });
    expect(declared.status).toBe(413);
    expect(declared.json.error).toBe('payload_too_large');
    // Without a Content-Length the limit is enforced while streaming.
    const streamed = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: s.port, method: 'POST', path: CHECK, headers: { ...SVC, 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      for (let i = 0; i < 8; i++) req.write('x'.repeat(512));
      req.end();
    });
    expect(streamed).toBe(413);
    const malformed = await s.call('POST', CHECK, { headers: SVC, raw: '{"tenantId": "acme",' });
    expect(malformed.status).toBe(400);
    expect(malformed.json).toMatchObject({ error: 'invalid_json', message: expect.stringMatching(/not valid JSON/) });
    expect((await s.call('POST', CHECK, { headers: SVC, raw: '' })).status).toBe(400);
    expect((await s.call('POST', CHECK, { headers: SVC, body: { tenantId: 'acme', usageType: 'API_CALL' } })).status).toBe(200);
  });

  it('answers 408 when a request body stops arriving', async () => {
    const { db } = t();
    const s = await start(db, { requestTimeoutMs: 100 });
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: s.port, method: 'POST', path: CHECK, headers: { ...SVC, 'content-length': '100' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.on('error', reject);
      req.write('{"tenantId":');
    });
    expect(status).toBe(408);
    expect(s.logs.at(-1)).toMatchObject({ path: CHECK, status: 408 });
  });

  it('rate-limits each client separately with 429 and Retry-After', async () => {
    const { db } = t();
    await seed(db);
    const s = await start(db, { rateLimit: { perSecond: 0.5, burst: 3 } });
    const body = { tenantId: 'acme', usageType: 'API_CALL' };
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await s.call('POST', CHECK, { headers: SVC, body })).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    const limited = await s.call('POST', CHECK, { headers: SVC, body });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    // Another credential has its own bucket.
    expect((await s.call('POST', CHECK, { headers: { 'x-service-secret': SECRETS[0] }, body })).status).toBe(200);
  });

  it('answers an unknown tenant and a bad period in API words: a machine code, no CLI command or flag', async () => {
    const { db } = t();
    await seed(db);
    const s = await start(db);
    const unknown = await s.call('GET', `${USAGE}/nobody`, { headers: SVC });
    expect(unknown.status).toBe(404);
    expect(unknown.json).toEqual({ error: 'not_found', message: 'tenant "nobody" does not exist' });
    const badPeriod = await s.call('GET', `${USAGE}/acme?period=2026-13`, { headers: SVC });
    expect(badPeriod.status).toBe(400);
    expect(badPeriod.json).toEqual({ error: 'usage', message: 'period "2026-13" is not current, previous or YYYY-MM (e.g. 2026-03)' });
    for (const r of [unknown, badPeriod]) {
      expect(r.text).not.toContain('`');
      expect(r.text).not.toContain('--');
      expect(r.text).not.toContain('billing ');
    }
  });

  it('serves the current period summary and Prometheus metrics', async () => {
    const { db } = t();
    await seed(db);
    const s = await start(db);
    await s.call('POST', USAGE, { headers: SVC, body: [event(1, { quantity: 60 }), event(2, { usageType: 'API_CALL', quantity: 3 })] });
    const r = await s.call('GET', `${USAGE}/acme`, { headers: SVC });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ tenantId: 'acme', currency: 'USD', period: { start: '2026-01-01T00:00:00.000Z', end: '2026-02-01T00:00:00.000Z' } });
    const ocr = r.json.features.find((f: { featureKey: string }) => f.featureKey === 'OCR_SCAN');
    expect(ocr).toMatchObject({ used: '60', included: '50', overage: '10', overageAmount: '0.50', isExceeded: true });
    expect((await s.call('GET', `${USAGE}/nobody`, { headers: SVC })).status).toBe(404);
    expect((await s.call('GET', `${USAGE}/acme?period=previous`, { headers: SVC })).json.period.start).toBe('2025-12-01T00:00:00.000Z');
    // Its prepaid balance, as `billing check --json` gives it: null until a grant, then what is live now.
    expect(r.json.credits).toBeNull();
    await grantCredit(db, { tenantId: 'acme', amount: '25.00' }, { now: START, actor: 'test' });
    await grantCredit(db, { tenantId: 'acme', amount: '10.00', effective: NOW + 1 }, { now: START, actor: 'test' });
    expect((await s.call('GET', `${USAGE}/acme`, { headers: SVC })).json.credits).toEqual({ balance: '25.00', currency: 'USD' });
    expect((await s.call('GET', `${USAGE}/globex`, { headers: SVC })).json.credits).toBeNull();

    await s.call('POST', CHECK, { headers: SVC, body: { tenantId: 'acme', usageType: 'API_CALL' } });
    const m = await s.call('GET', '/metrics');
    expect(m.status).toBe(200);
    expect(m.headers['content-type']).toMatch(/^text\/plain/);
    expect(m.text).toContain('billing_http_requests_total{method="POST",route="/v1/billing/usage",status="200"} 1');
    expect(m.text).toContain('billing_http_requests_total{method="GET",route="/v1/billing/usage/:tenantId",status="404"} 1');
    expect(m.text).toContain('billing_http_request_duration_seconds_count{route="/v1/billing/entitlements/check"} 1');
    expect(m.text).toContain('billing_usage_events_total{result="inserted"} 2');
    expect(m.text).toContain('billing_entitlement_checks_total{reason="within_plan"} 1');
  });

  it('applies signed Stripe webhooks once and refuses bad signatures', async () => {
    const { db } = t();
    const path = '/v1/billing/webhooks/stripe';
    const off = await start(db);
    expect((await off.call('POST', path, { raw: '{}', headers: { 'stripe-signature': 't=1,v1=00' } })).status).toBe(404);

    const s = await start(db, { stripeWebhookSecret: 'whsec_test_secret' });
    const ts = Math.floor(NOW / 1000);
    const payload = JSON.stringify({ id: 'evt_1', object: 'event', type: 'customer.created', created: ts, data: { object: { id: 'cus_1' } } });
    const sign = (secret: string) => `t=${ts},v1=${createHmac('sha256', secret).update(`${ts}.${payload}`).digest('hex')}`;
    const first = await s.call('POST', path, { raw: payload, headers: { 'stripe-signature': sign('whsec_test_secret') } });
    expect(first.status).toBe(200);
    expect(first.json).toMatchObject({ received: true, eventId: 'evt_1', type: 'customer.created', outcome: 'ignored' });
    const again = await s.call('POST', path, { raw: payload, headers: { 'stripe-signature': sign('whsec_test_secret') } });
    expect(again.json).toMatchObject({ eventId: 'evt_1', outcome: 'duplicate' });
    const forged = await s.call('POST', path, { raw: payload, headers: { 'stripe-signature': sign('whsec_wrong') } });
    expect(forged.status).toBe(400);
    expect(forged.json.error).toBe('signature_invalid');
    expect((await s.call('POST', path, { raw: payload })).status).toBe(400);
    const aheadTs = ts + 365 * 24 * 3600;
    const ahead = { id: 'evt_2', object: 'event', type: 'customer.created', created: ts, data: { object: { id: 'cus_2' } } };
    const aheadPayload = JSON.stringify(ahead);
    const aheadSig = `t=${aheadTs},v1=${createHmac('sha256', 'whsec_test_secret').update(`${aheadTs}.${aheadPayload}`).digest('hex')}`;
    const future = await s.call('POST', path, { raw: aheadPayload, headers: { 'stripe-signature': aheadSig } });
    expect(future.status).toBe(400);
    expect(future.json).toMatchObject({ error: 'signature_invalid', message: expect.stringMatching(/in the future/) });
    expect(Number((await db.knex('stripe_events').count({ n: '*' }).first())!.n)).toBe(1);
  });

  it('never lets 50 concurrent check-and-record requests exceed a hard stop', async () => {
    const { db } = t();
    await seed(db);
    const s = await start(db);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 50 });
    const consume = (path: string, n: number, quantity: number, enforce?: boolean) =>
      new Promise<Res>((resolve, reject) => {
        const body = JSON.stringify({ ...event(n, { usageType: 'API_CALL', quantity }), event_id: `c-${n}`, ...(enforce ? { enforce } : {}) });
        const req = http.request({ host: '127.0.0.1', port: s.port, method: 'POST', path, agent, headers: { ...SVC, 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: JSON.parse(text) }));
        });
        req.on('error', reject);
        req.end(body);
      });
    try {
      // 50 × 3 units against a limit of 10: exactly three fit.
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => consume(CONSUME, i, 3)));
      expect(results.filter((r) => r.status !== 200).map((r) => r.text)).toEqual([]);
      const inserted = results.filter((r) => r.json.status === 'inserted');
      expect(inserted).toHaveLength(3);
      expect(results.filter((r) => r.json.status === 'denied').every((r) => r.json.reason === 'limit_reached')).toBe(true);
      expect(await recordedUnits(db, 'acme', 'API_CALL')).toBe('9000000');

      // The same through POST /v1/billing/usage with "enforce": one unit left.
      const more = await Promise.all(Array.from({ length: 50 }, (_, i) => consume(USAGE, 100 + i, 1, true)));
      expect(more.filter((r) => r.json.status === 'inserted')).toHaveLength(1);
      expect(await recordedUnits(db, 'acme', 'API_CALL')).toBe('10000000');

      // A retry of an event that was consumed earlier is a duplicate, not a denial.
      const winner = results.findIndex((r) => r.json.status === 'inserted');
      const retry = await consume(CONSUME, winner, 3);
      expect(retry.json).toMatchObject({ status: 'duplicate', allowed: false });
      expect(await recordedUnits(db, 'acme', 'API_CALL')).toBe('10000000');
    } finally {
      agent.destroy();
    }
  });

  it('drains an in-flight request on SIGTERM, then exits 0 (real CLI)', async () => {
    const { db, url } = t();
    await seed(db);
    const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--db', url, '--now', new Date(NOW).toISOString()], {
      env: { ...process.env, BILLING_SERVICE_SECRETS: SECRETS.join(','), BILLING_DATABASE_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const listening = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        stdout += d;
        const m = /"msg":"listening","url":"([^"]+)"/.exec(stdout);
        if (m) resolve(m[1]);
      });
      child.on('exit', () => reject(new Error(`serve exited early: ${stderr}`)));
    });
    const port = Number(new URL(listening).port);

    const body = JSON.stringify({ tenantId: 'acme', usageType: 'API_CALL', quantity: 1 });
    let settle!: { resolve(r: Res): void; reject(e: Error): void };
    const response = new Promise<Res>((resolve, reject) => (settle = { resolve, reject }));
    const pending = http.request({ host: '127.0.0.1', port, method: 'POST', path: CHECK, agent: false, headers: { ...SVC, 'content-length': String(body.length) } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => settle.resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: JSON.parse(text) }));
    });
    pending.on('error', (e) => settle.reject(e));
    pending.write(body.slice(0, 10)); // headers and half a body: the request is in flight
    // Wait until the server counts it (the metrics request itself is the other one).
    for (let i = 0; ; i++) {
      const m = await call(port, 'GET', '/metrics');
      if (/billing_http_requests_in_flight 2/.test(m.text)) break;
      if (i > 100) throw new Error('request never reached the server');
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    await expect(call(port, 'GET', '/health')).rejects.toThrow(/ECONNREFUSED/);
    pending.end(body.slice(10));
    const r = await response;
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ allowed: true, reason: 'within_plan' });
    expect(await exited).toBe(0);
    expect(stdout).toMatch(/"msg":"stopped"/);
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.find((l) => l.path === CHECK)).toMatchObject({ status: 200, client: 'service:2' });
    // The daemon's shape too: {time, level, msg, ...}.
    for (const l of lines) expect(Object.keys(l).slice(0, 3)).toEqual(['time', 'level', 'msg']);
    expect(stdout).not.toContain(SECRETS[1]);
  });
});
