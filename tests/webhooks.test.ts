import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { T, world } from './invoice-world.js';
import type { Db } from '../src/storage/db.js';
import { openDb } from '../src/storage/db.js';
import { verifyWebhook } from '../src/index.js';
import { emitEvent } from '../src/webhooks/events.js';
import { addEndpoint } from '../src/webhooks/endpoints.js';
import { BACKOFF_BASE_MS, deliverWebhooks, listDeliveries, redeliver } from '../src/webhooks/deliver.js';
import { markInvoicePaid } from '../src/invoice/lifecycle.js';
import { getInvoice } from '../src/invoice/repository.js';
import { invoiceToJson } from '../src/invoice/types.js';
import { grantCredit } from '../src/subscriptions/credits.js';
import { verifyInvoices } from '../src/invoice/verify.js';
import { startDunning } from '../src/stripe/dunning-state.js';
import { importTenants } from '../src/subscriptions/import.js';
import { ManualScheduler } from './jobs-support.js';
import { startDaemon } from '../src/jobs/daemon.js';
import { JOB_NAMES } from '../src/jobs/stages.js';
import { DEFAULT_DAEMON_CONFIG, DEFAULT_SCHEDULES, toDaemonConfig } from '../src/jobs/schedules.js';

const SECRET = 'whsec_test_0123456789abcdef';
const ACTOR = { actor: 'test' };

/** A real HTTP receiver: records every request; `answer` picks a status per request, or holds it unanswered. */
interface Receiver {
  url: string;
  got: Array<{ body: string; signature: string }>;
  answer: (n: number) => number | 'hold';
  close(): Promise<void>;
}

const open: Receiver[] = [];
afterEach(async () => {
  for (const r of open.splice(0)) await r.close();
});

async function receiver(): Promise<Receiver> {
  const r = { got: [], answer: () => 200 } as unknown as Receiver;
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      r.got.push({ body, signature: String(req.headers['billing-signature']) });
      const a = r.answer(r.got.length);
      if (a === 'hold') return;
      res.writeHead(a, { 'content-type': 'text/plain' });
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  r.close = async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  };
  open.push(r);
  return r;
}

async function events(db: Db) {
  return (await db.knex('webhook_events').select('*').orderBy([{ column: 'created_at' }, { column: 'type' }])).map((e) => ({ ...e, body: JSON.parse(e.body), body_text: e.body as string }));
}

async function deliveriesOf(db: Db, endpointId: string) {
  return db.knex('webhook_deliveries as d').join('webhook_events as v', 'v.id', 'd.event_id').where('d.endpoint_id', endpointId).select('d.*', 'v.type').orderBy([{ column: 'v.created_at' }, { column: 'v.type' }]);
}

/** A tenant on `basic` with a January invoice (created and finalized at 2026-02-01T01:00Z). */
async function januaryInvoice(db: Db) {
  const w = world(db);
  await w.apply('2026-01-01T00:00:00Z');
  await w.tenant('2026-01-01T00:00:00Z', 'acme');
  await w.subscribe('2026-01-01T00:00:00Z', 'acme', 'basic');
  await w.usage('2026-01-10T00:00:00Z', 'acme', 'OCR_SCAN', '150');
  const r = await w.generate('2026-02-01T01:00:00Z', { finalize: true });
  return { w, invoice: r.created[0] };
}

describeEachDb('webhooks', (t) => {
  it('writes each event with its change, with the --json data, and only for endpoints whose filter matches then', async () => {
    const { db } = t();
    const all = await addEndpoint(db, { url: 'https://a.example/hooks', secret: SECRET }, { now: T('2025-12-31T00:00:00Z'), ...ACTOR });
    const paidOnly = await addEndpoint(db, { url: 'https://b.example/hooks', secret: SECRET, events: 'invoice.paid' }, { now: T('2025-12-31T00:00:00Z'), ...ACTOR });
    const { w, invoice } = await januaryInvoice(db);
    await grantCredit(db, { tenantId: 'acme', amount: '1.00' }, { now: T('2026-02-15T00:00:00Z'), ...ACTOR });
    await w.usage('2026-02-10T00:00:00Z', 'acme', 'OCR_SCAN', '10');
    await w.generate('2026-03-01T01:00:00Z'); // draft: created only; the credit is used up by it
    await markInvoicePaid(db, invoice.id, { now: T('2026-02-20T00:00:00Z'), ...ACTOR, reference: 'pi_1' });
    await w.change('2026-03-02T00:00:00Z', 'acme', 'pro');
    await w.cancel('2026-03-03T00:00:00Z', 'acme', 'period-end');

    const evs = await events(db);
    expect(evs.map((e) => [e.type, new Date(Number(e.created_at)).toISOString()])).toEqual([
      ['subscription.changed', '2026-01-01T00:00:00.000Z'],
      ['invoice.created', '2026-02-01T01:00:00.000Z'],
      ['invoice.finalized', '2026-02-01T01:00:00.000Z'],
      ['invoice.paid', '2026-02-20T00:00:00.000Z'],
      ['credit.depleted', '2026-03-01T01:00:00.000Z'],
      ['invoice.created', '2026-03-01T01:00:00.000Z'],
      ['subscription.changed', '2026-03-02T00:00:00.000Z'],
      ['subscription.changed', '2026-03-03T00:00:00.000Z'],
    ]);
    for (const e of evs) {
      expect(e.body).toEqual({ id: e.id, type: e.type, created: Math.floor(Number(e.created_at) / 1000), data: expect.anything() });
      expect(e.id).toMatch(/^evt_[0-9a-f]{24}$/);
      expect(e.tenant_id).toBe('acme');
    }
    // The data is the object as the CLI's --json shows it, at the moment of the event.
    const paid = evs.find((e) => e.type === 'invoice.paid')!;
    expect(paid.body.data).toEqual(JSON.parse(JSON.stringify(invoiceToJson(await getInvoice(db, invoice.id)))));
    expect(evs.find((e) => e.type === 'invoice.finalized')!.body.data).toMatchObject({ id: invoice.id, status: 'open', paidAt: null });
    expect(evs.find((e) => e.type === 'credit.depleted')!.body.data).toMatchObject({ tenant: 'acme', amount: '1.00', currency: 'USD', instance: 0 });
    expect(evs.map((e) => e.body.data.action).filter(Boolean)).toEqual(['create', 'change', 'cancel']);
    expect(evs.at(-1)!.body.data.subscription).toMatchObject({ id: 'sub_acme_1', cancelAt: '2026-04-01T00:00:00.000Z' });

    expect((await deliveriesOf(db, all.id)).map((d) => d.type)).toEqual(evs.map((e) => e.type));
    expect((await deliveriesOf(db, paidOnly.id)).map((d) => [d.type, d.status, Number(d.attempts), Number(d.next_attempt_at)])).toEqual([
      ['invoice.paid', 'pending', 0, T('2026-02-20T00:00:00Z')],
    ]);
    // An endpoint added later receives only what happens after it.
    const late = await addEndpoint(db, { url: 'https://c.example/hooks', secret: SECRET }, { now: T('2026-03-04T00:00:00Z'), ...ACTOR });
    expect(await deliveriesOf(db, late.id)).toEqual([]);

    // billing verify holds the outbox to its invariants.
    expect((await verifyInvoices(db)).violations).toEqual([]);
    await db.knex('webhook_events').where({ id: paid.id }).update({ body: paid.body_text.replace('"paid"', '"open"').replace(paid.id, 'evt_other') });
    await db.knex('webhook_deliveries').insert({ id: 'whd_orphan', tenant_id: 'acme', event_id: 'evt_gone', endpoint_id: all.id, status: 'pending', attempts: 0, next_attempt_at: 0, created_at: 0, updated_at: 0 });
    expect((await verifyInvoices(db)).violations).toEqual([
      { check: 'webhooks', tenantId: 'acme', message: `event ${paid.id}: its stored body is not {id, type, created, data} of this event` },
      { check: 'webhooks', message: 'delivery whd_orphan: its event is missing or belongs to another tenant' },
    ]);
  });

  it('writes invoice.payment_failed when a payment is declined and dunning starts, once per failure', async () => {
    const { db } = t();
    await addEndpoint(db, { url: 'https://a.example/hooks', secret: SECRET, events: 'invoice.payment_failed' }, { now: T('2025-12-31T00:00:00Z'), ...ACTOR });
    const { invoice } = await januaryInvoice(db);
    const fail = (at: string) =>
      db.tx((tx) => startDunning(tx, { tenantId: 'acme', invoiceId: invoice.id, stripeInvoiceId: 'in_1', failedAt: T(at), reason: 'card_declined' }, { now: T(at), ...ACTOR }));
    expect(await fail('2026-02-02T00:00:00Z')).toBe(true);
    expect(await fail('2026-02-02T00:05:00Z')).toBe(false); // the same failure reported again: dunning already runs
    const failed = (await events(db)).filter((e) => e.type === 'invoice.payment_failed');
    expect(failed.map((e) => [e.body.created, e.body.data.id, e.body.data.status])).toEqual([[T('2026-02-02T00:00:00Z') / 1000, invoice.id, 'open']]);
    expect(await db.knex('webhook_deliveries').select('event_id')).toEqual([{ event_id: failed[0].id }]);
  });

  it('the daemon delivers on its own webhooks schedule', async () => {
    const { db } = t();
    const rx = await receiver();
    await addEndpoint(db, { url: rx.url, secret: SECRET }, { now: T('2026-01-01T00:00:00Z'), ...ACTOR });
    await db.tx((tx) => emitEvent(tx.knex, { type: 'invoice.paid', tenantId: 'acme', data: {}, at: T('2026-01-01T00:00:00Z') }));
    expect(DEFAULT_SCHEDULES.webhooks).toBe('* * * * *');
    // The config file's key sets the schedule.
    expect(toDaemonConfig({ schedules: { webhooks: '*/10 * * * * *' } }).schedules.webhooks).toBe('*/10 * * * * *');
    const scheduler = new ManualScheduler();
    let now = T('2026-01-01T00:01:00Z');
    const schedules = Object.fromEntries(JOB_NAMES.map((j) => [j, j === 'webhooks' ? '* * * * *' : null]));
    const d = startDaemon(db, { config: { ...DEFAULT_DAEMON_CONFIG, schedules }, actor: 'test', clock: () => now, scheduler, log: () => undefined });
    const at = now;
    now += 1000; // past the settle delay
    scheduler.tick(at);
    await d.idle();
    expect(await d.stop('test')).toEqual({ clean: true });
    expect(rx.got).toHaveLength(1);
    expect((await listDeliveries(db)).map((x) => x.status)).toEqual(['delivered']);
  });

  it('tenant import announces each subscription it creates, and a dry run announces none', async () => {
    const { db } = t();
    await addEndpoint(db, { url: 'https://a.example/hooks', secret: SECRET, events: 'subscription.changed' }, { now: T('2025-12-31T00:00:00Z'), ...ACTOR });
    await world(db).apply('2026-01-01T00:00:00Z');
    const records = [
      { line: 1, fields: { id: 'acme', plan: 'basic' } },
      { line: 2, fields: { id: 'bolt' } },
      { line: 3, fields: { id: 'cove', plan: 'pro' } },
    ];
    await importTenants(db, records, { now: T('2026-01-02T00:00:00Z'), ...ACTOR, dryRun: true });
    expect(await events(db)).toEqual([]);
    expect(await importTenants(db, records, { now: T('2026-01-02T00:00:00Z'), ...ACTOR })).toMatchObject({ created: 3, subscribed: 2 });
    const evs = await events(db);
    expect(evs.map((e) => [e.tenant_id, e.body.data.action, e.body.data.subscription.id, e.body.data.segments[0].planKey]).sort()).toEqual([
      ['acme', 'create', 'sub_acme_1', 'basic'],
      ['cove', 'create', 'sub_cove_1', 'pro'],
    ]);
    expect(Number((await db.knex('webhook_deliveries').count({ n: '*' }))[0].n)).toBe(2);
    // Importing again changes nothing and announces nothing.
    await importTenants(db, records, { now: T('2026-01-03T00:00:00Z'), ...ACTOR });
    expect(await events(db)).toHaveLength(2);
  });

  it('writes no event for a change that rolls back', async () => {
    const { db } = t();
    await addEndpoint(db, { url: 'https://a.example/hooks', secret: SECRET }, { now: T('2025-12-31T00:00:00Z'), ...ACTOR });
    const w = world(db);
    await w.apply('2026-01-01T00:00:00Z');
    await w.tenant('2026-01-01T00:00:00Z', 'acme');
    await w.subscribe('2026-01-01T00:00:00Z', 'acme', 'basic');
    // A dry run composes real invoices in a transaction it rolls back.
    expect((await w.generate('2026-02-01T01:00:00Z', { finalize: true, dryRun: true })).created).toHaveLength(1);
    // A refused subscription (the tenant has one) writes nothing.
    await expect(w.subscribe('2026-01-02T00:00:00Z', 'acme', 'pro')).rejects.toMatchObject({ code: 'conflict' });
    // The caller's transaction failing after emitEvent takes the event and its deliveries with it.
    await expect(
      db.tx(async (tx) => {
        await emitEvent(tx.knex, { type: 'invoice.paid', tenantId: 'acme', data: {}, at: T('2026-01-03T00:00:00Z') });
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect((await events(db)).map((e) => e.type)).toEqual(['subscription.changed']);
    expect(Number((await db.knex('webhook_deliveries').count({ n: '*' }))[0].n)).toBe(1);
  });

  it('signs each POST so verifyWebhook accepts it, and rejects a tampered body, a stale timestamp or another secret', async () => {
    const { db } = t();
    const rx = await receiver();
    await addEndpoint(db, { url: rx.url, secret: SECRET }, { now: T('2025-12-31T00:00:00Z'), ...ACTOR });
    await januaryInvoice(db);
    const now = T('2026-02-01T01:00:05Z');
    const r = await deliverWebhooks(db, { now });
    expect(r).toMatchObject({ attempted: 3, delivered: 3, retryLater: 0, failed: 0 });
    // Sent concurrently: receivers get no order guarantee.
    expect(rx.got.map((g) => JSON.parse(g.body).type).sort()).toEqual(['invoice.created', 'invoice.finalized', 'subscription.changed']);
    const stored = new Map((await events(db)).map((e) => [e.id, e]));
    for (const g of rx.got) {
      expect(g.signature).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
      expect(g.signature.startsWith(`t=${Math.floor(now / 1000)},`)).toBe(true);
      // The stored body, byte for byte.
      expect(g.body).toBe((await db.knex('webhook_events').where({ id: JSON.parse(g.body).id }).first()).body);
      expect(stored.has(JSON.parse(g.body).id)).toBe(true);
      expect(verifyWebhook(g.body, g.signature, SECRET, { now })).toBe(true);
      expect(verifyWebhook(g.body, g.signature, SECRET, { now: now + 300_000 })).toBe(true);
      expect(verifyWebhook(g.body, g.signature, SECRET, { now: now + 301_000 })).toBe(false);
      expect(verifyWebhook(g.body, g.signature, SECRET, { now: now + 30_000, toleranceSeconds: 10 })).toBe(false);
      expect(verifyWebhook(g.body.replace('"acme"', '"acmf"'), g.signature, SECRET, { now })).toBe(false);
      expect(verifyWebhook(g.body, g.signature, `${SECRET}x`, { now })).toBe(false);
      expect(verifyWebhook(g.body, g.signature.replace(/t=\d+/, `t=${Math.floor(now / 1000) + 1}`), SECRET, { now })).toBe(false);
      expect(verifyWebhook(g.body, undefined, SECRET, { now })).toBe(false);
      expect(verifyWebhook(g.body, 'garbage', SECRET, { now })).toBe(false);
    }
    expect((await listDeliveries(db)).map((d) => [d.status, d.attempts, d.lastStatusCode])).toEqual([
      ['delivered', 1, 200], ['delivered', 1, 200], ['delivered', 1, 200],
    ]);
    // Nothing is due any more.
    expect(await deliverWebhooks(db, { now: now + 3_600_000 })).toMatchObject({ attempted: 0 });
  });

  it('retries a 500 and a timeout with full-jitter backoff, gives up after N attempts, and redelivers the identical body', async () => {
    const { db } = t();
    const rx = await receiver();
    const answers: Array<number | 'hold'> = [500, 'hold', 503, 200];
    rx.answer = (n) => answers[n - 1] ?? 200;
    const ep = await addEndpoint(db, { url: rx.url, secret: SECRET }, { now: T('2026-01-01T00:00:00Z'), ...ACTOR });
    await db.tx((tx) => emitEvent(tx.knex, { type: 'invoice.paid', tenantId: 'acme', data: { id: 'inv_1', total: '12.00' }, at: T('2026-01-01T00:00:00Z') }));
    const o = { random: () => 0.5, timeoutMs: 200, maxAttempts: 3 };
    let now = T('2026-01-01T00:00:00Z');
    const state = async () => {
      const d = (await deliveriesOf(db, ep.id))[0];
      return [d.status, Number(d.attempts), d.last_status_code === null ? null : Number(d.last_status_code), d.last_error, Number(d.next_attempt_at) - now];
    };

    expect(await deliverWebhooks(db, { now, ...o })).toMatchObject({ attempted: 1, retryLater: 1 });
    // Attempt 1 failed: a uniform wait below the base (random 0.5 → half of it).
    expect(await state()).toEqual(['pending', 1, 500, 'HTTP 500', BACKOFF_BASE_MS / 2]);
    expect(await deliverWebhooks(db, { now: now + BACKOFF_BASE_MS / 2 - 1, ...o })).toMatchObject({ attempted: 0 });

    now += BACKOFF_BASE_MS / 2;
    expect(await deliverWebhooks(db, { now, ...o })).toMatchObject({ attempted: 1, retryLater: 1 });
    // The receiver held the request past the timeout; the ceiling has doubled.
    expect(await state()).toEqual(['pending', 2, null, 'timeout: no answer within 200 ms', BACKOFF_BASE_MS]);

    now += BACKOFF_BASE_MS;
    expect(await deliverWebhooks(db, { now, ...o })).toMatchObject({ attempted: 1, failed: 1 });
    expect(await state()).toEqual(['failed', 3, 503, 'HTTP 503', 0]);
    expect((await listDeliveries(db, { failedOnly: true })).map((d) => d.id)).toHaveLength(1);
    expect(await deliverWebhooks(db, { now: now + 86_400_000, ...o })).toMatchObject({ attempted: 0 });

    // Redelivery: pending again with a fresh budget, the same id and body.
    const [dead] = await listDeliveries(db, { failedOnly: true });
    expect(await redeliver(db, dead.id, { now, ...ACTOR })).toEqual({ before: 'failed' });
    expect(await deliverWebhooks(db, { now, ...o })).toMatchObject({ attempted: 1, delivered: 1 });
    expect(await state()).toEqual(['delivered', 1, 200, null, 0]);
    // A delivered one may be sent again too.
    await redeliver(db, dead.id, { now, ...ACTOR });
    expect(await deliverWebhooks(db, { now, ...o })).toMatchObject({ delivered: 1 });
    expect(rx.got).toHaveLength(5);
    expect(new Set(rx.got.map((g) => g.body)).size).toBe(1);
    expect(JSON.parse(rx.got[0].body)).toMatchObject({ type: 'invoice.paid', data: { id: 'inv_1', total: '12.00' } });
  });

  it('leaves a delivery claimed by a run that died to the next run once its lease has passed', async () => {
    const { db } = t();
    const rx = await receiver();
    await addEndpoint(db, { url: rx.url, secret: SECRET }, { now: T('2026-01-01T00:00:00Z'), ...ACTOR });
    const now = T('2026-01-01T00:00:00Z');
    await db.tx((tx) => emitEvent(tx.knex, { type: 'invoice.paid', tenantId: 'acme', data: {}, at: now }));
    await db.knex('webhook_deliveries').update({ lease_owner: 'dead-run', lease_until: now + 60_000 });
    expect(await deliverWebhooks(db, { now })).toMatchObject({ attempted: 0 });
    expect(await deliverWebhooks(db, { now: now + 60_000 })).toMatchObject({ attempted: 1, delivered: 1 });
    expect(rx.got).toHaveLength(1);
  });

  it('after a commit, a fresh process delivers; two concurrent `webhook deliver` processes send each event once', async () => {
    const { db, url } = t();
    const rx = await receiver();
    await addEndpoint(db, { url: rx.url, secret: SECRET }, { now: T('2026-01-01T00:00:00Z'), ...ACTOR });
    // Committed by this handle, which then goes away as a crashed process would, before any delivery.
    const writer = await openDb(url);
    for (let i = 0; i < 12; i++) {
      await writer.tx((tx) => emitEvent(tx.knex, { type: 'invoice.paid', tenantId: `t${i}`, data: { n: i }, at: T('2026-01-01T00:00:00Z') + i }));
    }
    await writer.close();
    const now = '2026-01-01T00:01:00Z';
    const [a, b] = await Promise.all([runCli(['webhook', 'deliver', '--json'], { db: url, now }), runCli(['webhook', 'deliver', '--json'], { db: url, now })]);
    expect([a.code, b.code, a.stderr + b.stderr]).toEqual([0, 0, '']);
    const ra = JSON.parse(a.stdout);
    const rb = JSON.parse(b.stdout);
    expect(ra.delivered + rb.delivered).toBe(12);
    const ids = rx.got.map((g) => JSON.parse(g.body).id);
    expect(ids).toHaveLength(12);
    expect(new Set(ids).size).toBe(12);
    for (const g of rx.got) expect(verifyWebhook(g.body, g.signature, SECRET, { now: T(now) })).toBe(true);
    expect((await listDeliveries(db)).every((d) => d.status === 'delivered')).toBe(true);
  });

  it('never shows the secret: add, list, deliveries, deliver errors, status, audit', async () => {
    const { db, url } = t();
    const rx = await receiver();
    rx.answer = () => 500;
    const now = '2026-01-01T00:00:00Z';
    const cli = (...args: string[]) => runCli(args, { db: url, now });
    const add = await cli('webhook', 'add', rx.url, '--secret', SECRET, '--events', 'invoice.paid,subscription.changed');
    expect(add.code).toBe(0);
    const id = add.stdout.trim();
    expect(id).toMatch(/^we_[0-9a-f]{16}$/);
    await db.tx((tx) => emitEvent(tx.knex, { type: 'invoice.paid', tenantId: 'acme', data: {}, at: T(now) }));
    const outputs = [
      add,
      await cli('webhook', 'add', rx.url, '--secret', SECRET, '--json'),
      await cli('webhook', 'add', 'ftp://x.example', '--secret', SECRET),
      await cli('webhook', 'add', 'not a url', '--secret', SECRET),
      await cli('webhook', 'add', rx.url, '--secret', SECRET, '--events', 'invoice.paid,nope'),
      await cli('webhook', 'list'),
      await cli('webhook', 'list', '--json'),
      await cli('webhook', 'deliver'),
      await cli('webhook', 'deliveries'),
      await cli('webhook', 'deliveries', '--json'),
      await cli('status', '--json'),
      await cli('audit', '--json'),
      await cli('webhook', 'remove', id),
    ];
    for (const o of outputs) expect(o.stdout + o.stderr).not.toContain(SECRET);
    expect(outputs.slice(2, 5).map((o) => [o.code, o.stderr.trim().split('\n').length])).toEqual([[2, 1], [2, 1], [2, 1]]);
    expect(outputs[4].stderr).toContain('unknown event type "nope"');
    const listed = JSON.parse(outputs[6].stdout);
    expect(listed).toHaveLength(2);
    expect(listed).toContainEqual(expect.objectContaining({ id, url: rx.url, events: ['invoice.paid', 'subscription.changed'], enabled: true }));
    expect(listed).toContainEqual(expect.objectContaining({ url: rx.url, events: ['*'], enabled: true }));
    for (const e of listed) expect(Object.keys(e).sort()).toEqual(['createdAt', 'enabled', 'events', 'id', 'url']);
    expect(JSON.parse(outputs[9].stdout)).toEqual([expect.objectContaining({ status: 'pending', attempts: 1, lastError: 'HTTP 500', type: 'invoice.paid' })]);
    expect(JSON.parse(outputs[10].stdout).backlog.webhooks).toEqual({ pending: 1, due: 0, failed: 0 });
    const audit = await db.knex('audit_log').where('entity', 'webhook_endpoint').select('action', 'after', 'before');
    expect(audit.map((a) => a.action)).toEqual(['create', 'create', 'remove']);
    expect(JSON.stringify(audit)).not.toContain(SECRET);
  });

  it('`billing run` ends with the webhooks stage; status --strict fails on a dead delivery', async () => {
    const { db, url } = t();
    const rx = await receiver();
    rx.answer = () => 410;
    await addEndpoint(db, { url: rx.url, secret: SECRET }, { now: T('2026-01-01T00:00:00Z'), ...ACTOR });
    await db.tx((tx) => emitEvent(tx.knex, { type: 'invoice.paid', tenantId: 'acme', data: {}, at: T('2026-01-01T00:00:00Z') }));
    const run = await runCli(['run', '--json'], { db: url, now: '2026-01-01T00:00:00Z' });
    const stages = JSON.parse(run.stdout).stages;
    expect(stages.at(-1)).toMatchObject({ job: 'webhooks', status: 'succeeded', counts: expect.objectContaining({ attempted: 1, retryLater: 1 }) });
    expect((await runCli(['status', '--strict'], { db: url, now: '2026-01-01T00:00:00Z' })).code).toBe(0);
    await db.knex('webhook_deliveries').update({ attempts: 7, next_attempt_at: T('2026-01-01T00:00:00Z') });
    const again = await runCli(['run'], { db: url, now: '2026-01-01T00:00:01Z' });
    expect(again.code).toBe(3);
    expect(again.stderr).toContain('webhooks: 1 deliver(ies) failed for good');
    const status = await runCli(['status', '--strict'], { db: url, now: '2026-01-01T00:00:01Z' });
    expect(status.stdout).toContain('webhook deliveries: 0 pending (0 due now), 1 failed');
    expect(status.code).toBe(3);
  });
});
