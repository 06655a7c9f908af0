import { describe, expect, it } from 'vitest';
import { applyCatalog } from '../src/catalog/apply.js';
import { setQuota, listQuotas } from '../src/subscriptions/quota.js';
import { applyOverride, loadCurrentPlanVersion, loadQuotaOverride } from '../src/catalog/repository.js';
import { toIso } from '../src/domain/period.js';
import type { Db } from '../src/storage/db.js';
import { cancelSubscription, changePlan, effectiveStatus, subscribe } from '../src/subscriptions/lifecycle.js';
import { listSegments, type Segment, type Subscription } from '../src/subscriptions/repository.js';
import { createTenant, listTenantOverview } from '../src/subscriptions/tenants.js';
import { runCli } from './helpers/cli.js';
import { describeEachDb } from './helpers/db.js';

const t = (iso: string) => Date.parse(iso);
const at = (iso: string) => ({ now: t(iso), actor: 'ops@test' });
const START = '2026-01-31T00:00:00Z';

const plan = (key: string, price: string, extra: Record<string, unknown> = {}) => ({
  key, name: key, currency: 'USD', price, interval: 'month',
  features: { OCR_SCAN: { included: 50, overage: { model: 'per_unit', unitPrice: '0.05' } } },
  ...extra,
});

const CATALOG = {
  features: [{ key: 'OCR_SCAN', unit: 'scan' }, { key: 'VOICE', type: 'boolean' }],
  plans: [
    plan('basic', '10.00'),
    plan('premium', '20.00', { trialDays: 14 }),
    plan('annual', '100.00', { interval: 'year' }),
    plan('yen', '1000', { currency: 'JPY' }),
  ],
};

async function setup(db: Db, tenants = ['acme']): Promise<void> {
  await applyCatalog(db, CATALOG, at('2026-01-01T00:00:00Z'));
  for (const id of tenants) await createTenant(db, { id }, at('2026-01-01T00:00:00Z'));
}

const span = (segs: Segment[]) => segs.map((s) => [s.seq, `${s.planKey}@${s.planVersion}`, toIso(s.startsAt), s.endsAt === null ? null : toIso(s.endsAt)]);

describe('effectiveStatus', () => {
  const sub: Subscription = {
    tenantId: 'a', id: 's', status: 'trialing', anchorAt: t(START), interval: 'month', currency: 'USD',
    startedAt: t(START), trialEndsAt: t('2026-02-14T00:00:00Z'), cancelAt: null, canceledAt: null,
  };
  it('is trialing before the trial ends, then active, past_due when stored so, canceled from cancel_at on', () => {
    expect(effectiveStatus(sub, t('2026-02-13T23:59:59.999Z'))).toBe('trialing');
    expect(effectiveStatus(sub, t('2026-02-14T00:00:00Z'))).toBe('active');
    expect(effectiveStatus({ ...sub, status: 'past_due' }, t('2026-03-01T00:00:00Z'))).toBe('past_due');
    const ending = { ...sub, cancelAt: t('2026-02-10T00:00:00Z') };
    expect(effectiveStatus(ending, t('2026-02-09T23:59:59.999Z'))).toBe('trialing');
    expect(effectiveStatus(ending, t('2026-02-10T00:00:00Z'))).toBe('canceled');
    expect(effectiveStatus({ ...sub, status: 'canceled', trialEndsAt: null }, t(START))).toBe('canceled');
  });
});

describeEachDb('tenants', (ctx) => {
  it('creates tenants with checked ids and currencies, once, audited', async () => {
    const { db } = ctx();
    const tenant = await createTenant(db, { id: 'tnt_acme', name: ' Acme ', currency: 'usd' }, at(START));
    expect(tenant).toEqual({ id: 'tnt_acme', name: 'Acme', currency: 'USD', stripeCustomerId: null, createdAt: t(START) });
    await expect(createTenant(db, { id: 'tnt_acme' }, at(START))).rejects.toMatchObject({ code: 'conflict' });
    await expect(createTenant(db, { id: 'has space' }, at(START))).rejects.toThrow(/must not contain whitespace/);
    await expect(createTenant(db, { id: '' }, at(START))).rejects.toThrow(/non-empty/);
    await expect(createTenant(db, { id: 'x'.repeat(129) }, at(START))).rejects.toThrow(/at most 128/);
    await expect(createTenant(db, { id: 'ok', currency: 'EURO' }, at(START))).rejects.toThrow(/ISO 4217/);
    await createTenant(db, { id: 'x'.repeat(128) }, at(START));
    const audit = await db.knex('audit_log').where({ entity: 'tenant' }).orderBy('id');
    expect(audit.map((a) => [a.tenant_id, a.action, a.actor])).toEqual([
      ['tnt_acme', 'create', 'ops@test'],
      ['x'.repeat(128), 'create', 'ops@test'],
    ]);
  });
});

describeEachDb('subscriptions', (ctx) => {
  it('subscribes on the current plan version with the plan trial (or the flag), one live subscription per tenant', async () => {
    const { db } = ctx();
    await setup(db, ['acme', 'globex', 'yen-only']);
    const s = await subscribe(db, { tenantId: 'acme', planKey: 'premium', start: t(START) }, at('2026-02-01T00:00:00Z'));
    expect(s).toEqual({
      tenantId: 'acme', id: 'sub_acme_1', status: 'trialing', anchorAt: t(START), interval: 'month', currency: 'USD',
      startedAt: t(START), trialEndsAt: t('2026-02-14T00:00:00Z'), cancelAt: null, canceledAt: null,
    });
    expect(span(await listSegments(db.knex, 'acme', s.id))).toEqual([[1, 'premium@1', '2026-01-31T00:00:00.000Z', null]]);
    const g = await subscribe(db, { tenantId: 'globex', planKey: 'premium', trialDays: 0 }, at(START));
    expect(g).toMatchObject({ id: 'sub_globex_1', status: 'active', trialEndsAt: null, startedAt: t(START) });
    // backdated past its trial: stored active, the trial end still recorded
    await createTenant(db, { id: 'late' }, at(START));
    const late = await subscribe(db, { tenantId: 'late', planKey: 'premium', start: t('2025-12-01T00:00:00Z') }, at(START));
    expect(late).toMatchObject({ status: 'active', trialEndsAt: t('2025-12-15T00:00:00Z') });

    await expect(subscribe(db, { tenantId: 'acme', planKey: 'basic' }, at('2026-03-01T00:00:00Z'))).rejects.toThrow(
      /already has subscription sub_acme_1; use `billing subscription change`/,
    );
    await expect(subscribe(db, { tenantId: 'nobody', planKey: 'basic' }, at(START))).rejects.toMatchObject({ code: 'not_found' });
    await expect(subscribe(db, { tenantId: 'globex', planKey: 'gold' }, at(START))).rejects.toThrow(/unknown plan "gold"/);
    await db.knex('tenants').where({ id: 'yen-only' }).update({ currency: 'JPY' });
    await expect(subscribe(db, { tenantId: 'yen-only', planKey: 'basic' }, at(START))).rejects.toThrow(/billed in USD but tenant "yen-only" uses JPY/);

    // a new plan version does not move existing subscribers
    await applyCatalog(db, { plans: [plan('premium', '25.00', { trialDays: 14 })] }, at('2026-02-02T00:00:00Z'));
    expect(span(await listSegments(db.knex, 'acme', s.id))).toEqual([[1, 'premium@1', '2026-01-31T00:00:00.000Z', null]]);
  });

  it('lets only one of two concurrent subscribes for a tenant win, the other told why', async () => {
    const { db } = ctx();
    await setup(db);
    const results = await Promise.allSettled([
      subscribe(db, { tenantId: 'acme', planKey: 'basic' }, at(START)),
      subscribe(db, { tenantId: 'acme', planKey: 'premium' }, at(START)),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(rejected.reason).toMatchObject({ code: 'conflict' });
    expect(await db.knex('subscriptions').where({ tenant_id: 'acme' })).toHaveLength(1);
  });

  it('upgrades now and downgrades at period end, with the exact segment instants', async () => {
    const { db } = ctx();
    await setup(db);
    const s = await subscribe(db, { tenantId: 'acme', planKey: 'basic', start: t(START) }, at(START));
    const up = await changePlan(db, { tenantId: 'acme', planKey: 'premium' }, at('2026-02-14T12:00:00Z'));
    expect(toIso(up.effectiveAt)).toBe('2026-02-14T12:00:00.000Z');
    expect(span(up.segments)).toEqual([
      [1, 'basic@1', '2026-01-31T00:00:00.000Z', '2026-02-14T12:00:00.000Z'],
      [2, 'premium@1', '2026-02-14T12:00:00.000Z', null],
    ]);
    // the trial belongs to the subscription: upgrading does not start one
    expect(up.subscription.trialEndsAt).toBeNull();

    const down = await changePlan(db, { tenantId: 'acme', planKey: 'basic' }, at('2026-02-20T00:00:00Z'));
    // anchor 31 Jan: the period ends on 28 Feb (clamped), not 3 Mar
    expect(toIso(down.effectiveAt)).toBe('2026-02-28T00:00:00.000Z');
    expect(span(await listSegments(db.knex, 'acme', s.id))).toEqual([
      [1, 'basic@1', '2026-01-31T00:00:00.000Z', '2026-02-14T12:00:00.000Z'],
      [2, 'premium@1', '2026-02-14T12:00:00.000Z', '2026-02-28T00:00:00.000Z'],
      [3, 'basic@1', '2026-02-28T00:00:00.000Z', null],
    ]);

    // changing back to the plan in force undoes the scheduled downgrade
    const undo = await changePlan(db, { tenantId: 'acme', planKey: 'premium' }, at('2026-02-21T00:00:00Z'));
    expect(span(undo.segments)).toEqual([
      [1, 'basic@1', '2026-01-31T00:00:00.000Z', '2026-02-14T12:00:00.000Z'],
      [2, 'premium@1', '2026-02-14T12:00:00.000Z', null],
    ]);
    // again: already there, nothing scheduled: a no-op, not an error
    const again = await changePlan(db, { tenantId: 'acme', planKey: 'premium' }, at('2026-02-21T00:00:00Z'));
    expect(again.changed).toBe(false);
    expect(span(again.segments)).toEqual(span(undo.segments));

    // an explicit downgrade now, and an explicit instant
    const now = await changePlan(db, { tenantId: 'acme', planKey: 'basic', at: 'now' }, at('2026-02-22T00:00:00Z'));
    expect(span(now.segments).slice(1)).toEqual([
      [2, 'premium@1', '2026-02-14T12:00:00.000Z', '2026-02-22T00:00:00.000Z'],
      [3, 'basic@1', '2026-02-22T00:00:00.000Z', null],
    ]);
    const later = await changePlan(db, { tenantId: 'acme', planKey: 'premium', at: t('2026-03-05T00:00:00Z') }, at('2026-02-23T00:00:00Z'));
    expect(span(later.segments).slice(2)).toEqual([
      [3, 'basic@1', '2026-02-22T00:00:00.000Z', '2026-03-05T00:00:00.000Z'],
      [4, 'premium@1', '2026-03-05T00:00:00.000Z', null],
    ]);
    await expect(
      changePlan(db, { tenantId: 'acme', planKey: 'premium', at: t('2026-02-01T00:00:00Z') }, at('2026-02-23T00:00:00Z')),
    ).rejects.toThrow(/is in the past/);
  });

  it('moves to a new version of the same plan explicitly, and refuses interval or currency changes', async () => {
    const { db } = ctx();
    await setup(db);
    await subscribe(db, { tenantId: 'acme', planKey: 'basic', start: t(START) }, at(START));
    expect((await changePlan(db, { tenantId: 'acme', planKey: 'basic' }, at('2026-02-01T00:00:00Z'))).changed).toBe(false);
    await applyCatalog(db, { plans: [plan('basic', '12.00')] }, at('2026-02-01T00:00:00Z'));
    const moved = await changePlan(db, { tenantId: 'acme', planKey: 'basic' }, at('2026-02-10T00:00:00Z'));
    // 12.00 > 10.00: an upgrade, effective now
    expect(span(moved.segments)).toEqual([
      [1, 'basic@1', '2026-01-31T00:00:00.000Z', '2026-02-10T00:00:00.000Z'],
      [2, 'basic@2', '2026-02-10T00:00:00.000Z', null],
    ]);
    await expect(changePlan(db, { tenantId: 'acme', planKey: 'annual' }, at('2026-02-10T00:00:00Z'))).rejects.toThrow(
      /changing the interval is not supported/,
    );
    await expect(changePlan(db, { tenantId: 'acme', planKey: 'yen' }, at('2026-02-10T00:00:00Z'))).rejects.toThrow(/billed in JPY/);
  });

  it('cancels at period end by default (dropping scheduled changes) or now; a new subscription may follow', async () => {
    const { db } = ctx();
    await setup(db);
    await subscribe(db, { tenantId: 'acme', planKey: 'premium', start: t(START) }, at(START));
    await changePlan(db, { tenantId: 'acme', planKey: 'basic' }, at('2026-02-03T00:00:00Z')); // scheduled for 28 Feb
    const c = await cancelSubscription(db, { tenantId: 'acme' }, at('2026-02-05T00:00:00Z'));
    expect(c).toMatchObject({ status: 'trialing', cancelAt: t('2026-02-28T00:00:00Z'), canceledAt: null });
    expect(span(await listSegments(db.knex, 'acme', c.id))).toEqual([[1, 'premium@1', '2026-01-31T00:00:00.000Z', '2026-02-28T00:00:00.000Z']]);
    expect(effectiveStatus(c, t('2026-02-27T23:59:59Z'))).toBe('active');
    expect(effectiveStatus(c, t('2026-02-28T00:00:00Z'))).toBe('canceled');
    // a change may not take effect after the end
    await expect(changePlan(db, { tenantId: 'acme', planKey: 'basic' }, at('2026-02-06T00:00:00Z'))).rejects.toThrow(/ends at 2026-02-28/);

    // rescheduled to now
    const now = await cancelSubscription(db, { tenantId: 'acme', at: 'now' }, at('2026-02-10T08:00:00Z'));
    expect(now).toMatchObject({ status: 'canceled', cancelAt: t('2026-02-10T08:00:00Z'), canceledAt: t('2026-02-10T08:00:00Z') });
    expect(span(await listSegments(db.knex, 'acme', c.id))).toEqual([[1, 'premium@1', '2026-01-31T00:00:00.000Z', '2026-02-10T08:00:00.000Z']]);
    await expect(cancelSubscription(db, { tenantId: 'acme' }, at('2026-02-11T00:00:00Z'))).rejects.toThrow(/no live subscription/);
    await expect(changePlan(db, { tenantId: 'acme', planKey: 'basic' }, at('2026-02-11T00:00:00Z'))).rejects.toMatchObject({ code: 'not_found' });

    const again = await subscribe(db, { tenantId: 'acme', planKey: 'basic' }, at('2026-02-11T00:00:00Z'));
    expect(again).toMatchObject({ id: 'sub_acme_2', status: 'active', anchorAt: t('2026-02-11T00:00:00Z') });
    const [overview] = await listTenantOverview(db, { now: t('2026-02-12T00:00:00Z') });
    expect(overview).toMatchObject({ id: 'acme', subscriptionId: 'sub_acme_2', planKey: 'basic', planVersion: 1, status: 'active' });
  });

  it('audits every change with actor and before/after', async () => {
    const { db } = ctx();
    await setup(db);
    const s = await subscribe(db, { tenantId: 'acme', planKey: 'basic', start: t(START) }, at(START));
    await changePlan(db, { tenantId: 'acme', planKey: 'premium' }, at('2026-02-10T00:00:00Z'));
    await cancelSubscription(db, { tenantId: 'acme' }, at('2026-02-11T00:00:00Z'));
    await setQuota(db, { tenantId: 'acme', featureKey: 'OCR_SCAN', included: '80' }, at('2026-02-11T00:00:00Z'));
    const rows = await db.knex('audit_log').where({ tenant_id: 'acme' }).orderBy('id');
    expect(rows.map((r) => [r.entity, r.entity_id, r.action, r.actor, Number(r.at)])).toEqual([
      ['tenant', 'acme', 'create', 'ops@test', t('2026-01-01T00:00:00Z')],
      ['subscription', s.id, 'create', 'ops@test', t(START)],
      ['subscription', s.id, 'change', 'ops@test', t('2026-02-10T00:00:00Z')],
      ['subscription', s.id, 'cancel', 'ops@test', t('2026-02-11T00:00:00Z')],
      ['quota', 'acme/OCR_SCAN', 'create', 'ops@test', t('2026-02-11T00:00:00Z')],
    ]);
    const change = rows[2];
    expect(JSON.parse(change.before).segments).toHaveLength(1);
    expect(JSON.parse(change.after).segments.map((x: Segment) => x.planKey)).toEqual(['basic', 'premium']);
    const cancel = rows[3];
    expect(JSON.parse(cancel.before).subscription.cancelAt).toBeNull();
    expect(JSON.parse(cancel.after).subscription.cancelAt).toBe(t('2026-02-28T00:00:00Z'));
  });

  it('keeps tenants isolated: commands on one tenant never touch another tenant rows', async () => {
    const { db } = ctx();
    await setup(db, ['a', 'b']);
    await subscribe(db, { tenantId: 'b', planKey: 'basic', start: t(START) }, at(START));
    await setQuota(db, { tenantId: 'b', featureKey: 'OCR_SCAN', included: '5' }, at(START));
    const snapshot = async () => ({
      subs: await db.knex('subscriptions').where({ tenant_id: 'b' }).orderBy('id'),
      segs: await db.knex('subscription_segments').where({ tenant_id: 'b' }).orderBy('seq'),
      quotas: await db.knex('quota_overrides').where({ tenant_id: 'b' }),
      audit: await db.knex('audit_log').where({ tenant_id: 'b' }).count({ n: '*' }),
    });
    const before = await snapshot();
    await subscribe(db, { tenantId: 'a', planKey: 'basic', start: t(START) }, at(START));
    await changePlan(db, { tenantId: 'a', planKey: 'premium' }, at('2026-02-05T00:00:00Z'));
    await changePlan(db, { tenantId: 'a', planKey: 'basic' }, at('2026-02-06T00:00:00Z'));
    await setQuota(db, { tenantId: 'a', featureKey: 'OCR_SCAN', included: null, hardStop: true, limit: '500' }, at('2026-02-06T00:00:00Z'));
    await cancelSubscription(db, { tenantId: 'a', at: 'now' }, at('2026-02-07T00:00:00Z'));
    expect(await snapshot()).toEqual(before);
    expect(await loadQuotaOverride(db.knex, 'b', 'OCR_SCAN')).toEqual({ tenantId: 'b', featureKey: 'OCR_SCAN', included: '5' });
  });
});

describeEachDb('quota overrides', (ctx) => {
  it('upserts only the given fields and reads back through applyOverride', async () => {
    const { db } = ctx();
    await setup(db);
    const terms = (await loadCurrentPlanVersion(db.knex, 'basic'))!.features.OCR_SCAN;
    const o1 = await setQuota(db, { tenantId: 'acme', featureKey: 'OCR_SCAN', included: '100', unitPrice: '0.04' }, at(START));
    expect(o1).toEqual({ tenantId: 'acme', featureKey: 'OCR_SCAN', included: '100', unitPrice: '0.04' });
    const o2 = await setQuota(db, { tenantId: 'acme', featureKey: 'OCR_SCAN', hardStop: true, limit: '150' }, at(START));
    expect(o2).toEqual({ tenantId: 'acme', featureKey: 'OCR_SCAN', included: '100', unitPrice: '0.04', hardStop: true, limit: '150' });
    expect(applyOverride(terms, o2)).toEqual({
      featureKey: 'OCR_SCAN', enabled: true, included: '100', hardStop: true, limit: '150',
      overage: { model: 'per_unit', unitPrice: '0.04', minimum: null, maximum: null },
    });
    // unlimited, and back to the plan's price and default limit
    const o3 = await setQuota(db, { tenantId: 'acme', featureKey: 'OCR_SCAN', included: null, unitPrice: null, limit: null, hardStop: false }, at(START));
    expect(o3).toEqual({ tenantId: 'acme', featureKey: 'OCR_SCAN', included: null, hardStop: false });
    expect(applyOverride(terms, o3)).toMatchObject({ included: null, hardStop: false, overage: { unitPrice: '0.05' } });
    expect(await listQuotas(db, 'acme')).toEqual([o3]);

    await expect(setQuota(db, { tenantId: 'acme', featureKey: 'OCR_SCAN' }, at(START))).rejects.toMatchObject({ code: 'usage' });
    await expect(setQuota(db, { tenantId: 'acme', featureKey: 'VOICE', included: '1' }, at(START))).rejects.toThrow(/boolean feature/);
    await expect(setQuota(db, { tenantId: 'acme', featureKey: 'NOPE', included: '1' }, at(START))).rejects.toMatchObject({ code: 'not_found' });
    await expect(setQuota(db, { tenantId: 'ghost', featureKey: 'OCR_SCAN', included: '1' }, at(START))).rejects.toMatchObject({ code: 'not_found' });
    await expect(setQuota(db, { tenantId: 'acme', featureKey: 'OCR_SCAN', unitPrice: '-1' }, at(START))).rejects.toThrow(/unit price/);
    await expect(setQuota(db, { tenantId: 'acme', featureKey: 'OCR_SCAN', included: '1.0000001' }, at(START))).rejects.toThrow(/6 decimals/);

    const audit = await db.knex('audit_log').where({ entity: 'quota' }).orderBy('id');
    expect(audit.map((a) => a.action)).toEqual(['create', 'update', 'update']);
    expect(JSON.parse(audit[2].before)).toEqual(o2);
    expect(JSON.parse(audit[2].after)).toEqual(o3);
  });

  it('CLI: tenant, subscribe, subscription show/change/cancel and quota commands', async () => {
    const { db, url } = ctx();
    await applyCatalog(db, CATALOG, at('2026-01-01T00:00:00Z'));
    const cli = (args: string[], now: string) => runCli([...args, '--json'], { db: url, now });
    const created = await cli(['tenant', 'create', 'acme', '--name', 'Acme Corp', '--currency', 'usd'], START);
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ id: 'acme', name: 'Acme Corp', currency: 'USD' });

    const sub = await cli(['subscribe', 'acme', 'premium', '--start', '2026-01-31T00:00:00Z', '--trial-days', '7'], START);
    expect(JSON.parse(sub.stdout)).toMatchObject({ id: 'sub_acme_1', status: 'trialing', trialEndsAt: '2026-02-07T00:00:00.000Z' });

    const show = await cli(['subscription', 'show', 'acme'], '2026-02-10T00:00:00Z');
    expect(JSON.parse(show.stdout)).toMatchObject({
      status: 'active',
      currentPeriod: { start: '2026-01-31T00:00:00.000Z', end: '2026-02-28T00:00:00.000Z' },
      plan: { key: 'premium', version: 1 },
    });
    const text = await runCli(['subscription', 'show', 'acme'], { db: url, now: '2026-02-10T00:00:00Z' });
    expect(text.stdout).toContain('\n  current period 2026-01-31 – 2026-02-27\n');

    const change = await cli(['subscription', 'change', 'acme', 'basic'], '2026-02-10T00:00:00Z');
    expect(JSON.parse(change.stdout)).toMatchObject({ effectiveAt: '2026-02-28T00:00:00.000Z' });
    const bad = await runCli(['subscription', 'change', 'acme', 'basic', '--at', 'tomorrow'], { db: url, now: '2026-02-10T00:00:00Z' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--at "tomorrow" must be now, period-end or an ISO 8601 instant/);

    const human = await runCli(['subscription', 'cancel', 'acme', '--at', 'now'], { db: url, now: '2026-02-12T00:00:00Z' });
    expect(human.stdout.trim()).toBe('sub_acme_1 canceled');

    const quota = await cli(['quota', 'set', 'acme', 'OCR_SCAN', '--included', 'unlimited', '--no-hard-stop'], START);
    expect(JSON.parse(quota.stdout)).toEqual({ tenantId: 'acme', featureKey: 'OCR_SCAN', included: null, hardStop: false });
    const list = await runCli(['quota', 'list', 'acme'], { db: url });
    expect(list.stdout).toMatch(/OCR_SCAN\s+unlimited\s+plan\s+false\s+plan/);

    const tenants = await cli(['tenant', 'list'], '2026-02-13T00:00:00Z');
    expect(JSON.parse(tenants.stdout)).toEqual([
      expect.objectContaining({ id: 'acme', subscriptionId: 'sub_acme_1', planKey: 'premium', status: 'canceled' }),
    ]);
    const again = await runCli(['subscribe', 'nobody', 'basic'], { db: url });
    expect(again.code).toBe(2);
    expect(again.stderr.trim()).toBe('billing: unknown tenant "nobody" (create it with `billing tenant create nobody`)');
  });
});
