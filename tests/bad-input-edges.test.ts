import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { applyCatalog } from '../src/catalog/apply.js';
import { parseCatalogText } from '../src/catalog/load.js';
import { BillingError } from '../src/domain/errors.js';
import { createServer, stopServer } from '../src/serve/server.js';
import { applyStripeEvent, verifyWebhook } from '../src/stripe/webhooks.js';
import { subscribe } from '../src/subscriptions/lifecycle.js';
import { createTenant } from '../src/subscriptions/tenants.js';
import { describeEachDb } from './helpers/db.js';

// Malformed catalogs, webhook deliveries and HTTP bodies, one row each, with the outcome
// each must get: a clear refusal with a stable code, never a crash or a silent store.

const NOW = Date.parse('2026-01-15T12:00:00Z');
const NOW_SEC = NOW / 1000;

const CATALOG = {
  features: [{ key: 'API_CALL', name: 'API calls', unit: 'call', aggregation: 'sum' }],
  plans: [{ key: 'starter', name: 'Starter', currency: 'USD', price: '29.00', interval: 'month', features: { API_CALL: { included: 10, hardStop: true } } }],
};

function aliasBomb(): string {
  const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 9; i++) {
    const [name, prev] = [String.fromCharCode(97 + i), String.fromCharCode(96 + i)];
    lines.push(`${name}: &${name} [${Array(10).fill(`*${prev}`).join(', ')}]`);
  }
  return lines.join('\n');
}

/** [kind, file name, text, expected: 'ok' or the error message pattern (code catalog_invalid)]. */
const CATALOG_CASES: Array<[string, string, string, 'ok' | RegExp]> = [
  ['YAML alias bomb', 'c.yaml', aliasBomb(), /as YAML: .*alias/i],
  ['JSON with a UTF-8 BOM', 'c.json', '\ufeff' + JSON.stringify(CATALOG), 'ok'],
  ['YAML with a UTF-8 BOM', 'c.yaml', '\ufeffplans: []\n', 'ok'],
  ['truncated JSON', 'c.json', JSON.stringify(CATALOG).slice(0, 40), /cannot parse c\.json as JSON/],
  ['empty JSON file', 'c.json', '', /cannot parse c\.json as JSON/],
  ['YAML duplicate key', 'c.yaml', 'plans: []\nplans: []\n', /cannot parse c\.yaml as YAML: Map keys must be unique/],
  ['YAML unclosed flow sequence', 'c.yaml', 'plans: [\n', /cannot parse c\.yaml as YAML/],
];

describe('malformed catalog files', () => {
  it.each(CATALOG_CASES)('%s', async (_kind, name, text, expected) => {
    const parsing = parseCatalogText(text, name);
    if (expected === 'ok') {
      await expect(parsing).resolves.toBeTypeOf('object');
      return;
    }
    const e = await parsing.then(() => null, (err: unknown) => err);
    expect(e).toBeInstanceOf(BillingError);
    expect((e as BillingError).code).toBe('catalog_invalid');
    expect((e as BillingError).message).toMatch(expected);
    expect((e as BillingError).message).not.toContain('\n');
  });
});

const SECRET = 'whsec_edges';
const PAYLOAD = JSON.stringify({ id: 'evt_e1', object: 'event', type: 'customer.created', created: NOW_SEC, data: { object: { id: 'cus_1' } } });
const sign = (t: number, payload = PAYLOAD, secret = SECRET) => `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${payload}`).digest('hex')}`;

/** [kind, Stripe-Signature header, expected: 'ok' or the message pattern (code signature_invalid)]. */
const SIGNATURE_CASES: Array<[string, string, 'ok' | RegExp]> = [
  ['signed now', sign(NOW_SEC), 'ok'],
  ['signed 4 minutes ahead (within tolerance)', sign(NOW_SEC + 240), 'ok'],
  ['signed a year ahead', sign(NOW_SEC + 365 * 86400), /in the future/],
  ['signed 10 minutes ahead', sign(NOW_SEC + 600), /in the future/],
  ['signed an hour ago', sign(NOW_SEC - 3600), /tolerance/],
  ['wrong secret', sign(NOW_SEC, PAYLOAD, 'whsec_other'), /signature/],
  ['garbage header', 'not-a-signature', /signature/],
];

describe('Stripe webhook signatures', () => {
  it.each(SIGNATURE_CASES)('%s', async (_kind, header, expected) => {
    const verifying = verifyWebhook(PAYLOAD, header, { secret: SECRET, now: NOW });
    if (expected === 'ok') {
      await expect(verifying).resolves.toMatchObject({ id: 'evt_e1' });
      return;
    }
    const e = await verifying.then(() => null, (err: unknown) => err);
    expect(e).toBeInstanceOf(BillingError);
    expect((e as BillingError).code).toBe('signature_invalid');
    expect((e as BillingError).message).toMatch(expected);
  });
});

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
function jwt(claims: Record<string, unknown>): string {
  const data = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${data}.${createHmac('sha256', 'jwt-edges-secret').update(data).digest('base64url')}`;
}
const SVC = { 'x-service-secret': 'svc-edges-secret' };
const good = { tenantId: 'acme', usageType: 'API_CALL', quantity: 1, sourceService: 'svc', sourceEntityId: 'e-1' };

/** [kind, path, headers, raw body, expected status, expected error code]. */
const HTTP_CASES: Array<[string, string, Record<string, string>, string, number, string]> = [
  ['consume: tenantId an object', 'consume', SVC, JSON.stringify({ ...good, tenantId: { $ne: null } }), 400, 'invalid_body'],
  ['consume: tenantId an array', 'consume', SVC, JSON.stringify({ ...good, tenantId: ['acme'] }), 400, 'invalid_body'],
  ['consume: tenantId missing', 'consume', SVC, JSON.stringify({ ...good, tenantId: undefined }), 400, 'invalid_body'],
  ['consume: usageType an array', 'consume', SVC, JSON.stringify({ ...good, usageType: ['API_CALL'] }), 400, 'invalid_body'],
  ['consume: quantity an object', 'consume', SVC, JSON.stringify({ ...good, quantity: { n: 1 } }), 400, 'invalid_body'],
  ['consume: body an array', 'consume', SVC, JSON.stringify([good]), 400, 'invalid_body'],
  ['consume: body not JSON', 'consume', SVC, '{"tenantId": ', 400, 'invalid_json'],
  ['check: tenantId a number', 'check', SVC, JSON.stringify({ ...good, tenantId: 42 }), 400, 'invalid_body'],
  ['check: JWT without exp', 'check', { authorization: `Bearer ${jwt({ sub: 'x', tenant_id: 'acme' })}` }, JSON.stringify(good), 401, 'unauthorized'],
  ['check: JWT with a text exp', 'check', { authorization: `Bearer ${jwt({ sub: 'x', tenant_id: 'acme', exp: String(NOW_SEC + 60) })}` }, JSON.stringify(good), 401, 'unauthorized'],
  ['check: JWT with exp (accepted)', 'check', { authorization: `Bearer ${jwt({ sub: 'x', tenant_id: 'acme', exp: NOW_SEC + 60 })}` }, JSON.stringify(good), 200, ''],
];

function post(port: number, path: string, headers: Record<string, string>, body: string): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const servers: http.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => stopServer(s, 1000)));
});

describeEachDb('malformed HTTP bodies and Stripe event times', (t) => {
  it('answers each malformed body with its 4xx and logs no 500', async () => {
    const { db } = t();
    const opts = { now: NOW - 86400_000, actor: 'test' };
    await applyCatalog(db, CATALOG, opts);
    await createTenant(db, { id: 'acme' }, opts);
    await subscribe(db, { tenantId: 'acme', planKey: 'starter', start: opts.now }, opts);
    const logs: Array<Record<string, unknown>> = [];
    const server = createServer(db, {
      auth: { serviceSecrets: ['svc-edges-secret'], jwt: { hmacSecret: 'jwt-edges-secret' } },
      clock: () => NOW,
      rateLimit: null,
      log: (e) => logs.push(e),
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    for (const [kind, route, headers, body, status, code] of HTTP_CASES) {
      const r = await post(port, `/v1/billing/entitlements/${route}`, headers, body);
      expect(r.status, kind).toBe(status);
      if (code) expect(r.json.error, kind).toBe(code);
    }
    expect(logs.filter((l) => l.status === 500)).toEqual([]);
    expect(Number((await db.knex('usage_events').count({ n: '*' }).first())!.n)).toBe(0);
  });

  it.each([
    ['created 1e20', 1e20],
    ['created negative', -1],
    ['created a fraction', NOW_SEC + 0.25],
    ['created in 1970', 60],
    ['created a week ahead', NOW_SEC + 7 * 86400],
  ])('refuses a Stripe event with %s and stores nothing', async (_kind, created) => {
    const { db } = t();
    const event = { id: 'evt_bad_time', type: 'customer.created', created, data: { object: { id: 'cus_1' } } };
    const e = await applyStripeEvent(db, event, { now: NOW, actor: 'test' }).then(() => null, (err: unknown) => err);
    expect(e).toBeInstanceOf(BillingError);
    expect((e as BillingError).code).toBe('invalid_input');
    expect((e as BillingError).message).toMatch(/^Stripe event evt_bad_time: created .* is not a time in epoch seconds/);
    expect(await db.knex('stripe_events')).toHaveLength(0);
  });
});
