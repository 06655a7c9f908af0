import { beforeEach, expect, it } from 'vitest';
import { setQuota } from '../src/subscriptions/quota.js';
import { checkEntitlement } from '../src/entitlements/check.js';
import { cancelSubscription } from '../src/subscriptions/lifecycle.js';
import { grantCredit, voidCredit } from '../src/subscriptions/credits.js';
import { runCli } from './helpers/cli.js';
import { describeEachDb } from './helpers/db.js';
import { ACTOR, applyTestCatalog, insertEvents, iso, tenant } from './aggregate-support.js';

const NOW = iso('2026-03-20T12:00:00Z');

describeEachDb('billing check', (t) => {
  beforeEach(async () => {
    const { db } = t();
    await applyTestCatalog(db, iso('2026-01-01T00:00:00Z'));
    // starter anchored on the 10th: the current period is [10 Mar, 10 Apr).
    await tenant(db, 'acme', { planKey: 'starter', start: '2026-01-10T00:00:00Z' });
    await tenant(db, 'bigco', { planKey: 'pro', start: '2026-03-15T00:00:00Z', trialDays: 14 });
    await tenant(db, 'nosub');
  });

  const check = (tenantId: string, featureKey: string, quantity?: string, now = NOW) =>
    checkEntitlement(t().db, { tenantId, featureKey, quantity }, { now });

  it('answers unknown tenants and features, and tenants without a live subscription', async () => {
    expect(await check('ghost', 'OCR_SCAN')).toEqual({
      allowed: false, remaining: '0', reason: 'unknown_tenant', hardStop: false, used: '0', included: null, limit: null,
    });
    expect((await check('acme', 'NOPE')).reason).toBe('unknown_feature');
    expect((await check('nosub', 'OCR_SCAN')).reason).toBe('no_active_subscription');
    // before the subscription started
    expect((await check('bigco', 'OCR_SCAN', '1', iso('2026-03-01T00:00:00Z'))).reason).toBe('no_active_subscription');
    await cancelSubscription(t().db, { tenantId: 'acme', at: 'now' }, { now: iso('2026-03-18T00:00:00Z'), actor: ACTOR });
    const r = await check('acme', 'OCR_SCAN');
    expect(r).toMatchObject({ allowed: false, reason: 'no_active_subscription' });
  });

  it('counts the current period only, including events never aggregated, exactly', async () => {
    await insertEvents(t().db, [
      { tenant: 'acme', feature: 'OCR_SCAN', qty: '1000', at: '2026-03-09T23:59:59.999Z' }, // previous period
      { tenant: 'acme', feature: 'OCR_SCAN', qty: '0.1', at: '2026-03-10T00:00:00Z' }, // exactly at the boundary: counts
      { tenant: 'acme', feature: 'OCR_SCAN', qty: '0.2', at: '2026-03-19T00:00:00Z' },
      { tenant: 'bigco', feature: 'OCR_SCAN', qty: '7', at: '2026-03-19T00:00:00Z' }, // another tenant
    ]);
    expect(await check('acme', 'OCR_SCAN')).toEqual({
      allowed: true, remaining: '49.7', reason: 'within_plan', hardStop: false, used: '0.3', included: '50', limit: '50',
    });
  });

  it('allows soft overage and denies beyond a hard stop, with quantity > 1', async () => {
    await insertEvents(t().db, [{ tenant: 'acme', feature: 'OCR_SCAN', qty: '49', at: '2026-03-11T00:00:00Z' }]);
    expect(await check('acme', 'OCR_SCAN', '1')).toMatchObject({ allowed: true, reason: 'within_plan', remaining: '1' });
    expect(await check('acme', 'OCR_SCAN', '2')).toMatchObject({ allowed: true, reason: 'overage', remaining: '1', hardStop: false });

    // API_CALL counts events; 100 included with a hard stop.
    await insertEvents(t().db, Array.from({ length: 98 }, () => ({ tenant: 'acme', feature: 'API_CALL', qty: '5', at: '2026-03-12T00:00:00Z' })));
    expect(await check('acme', 'API_CALL', '2')).toEqual({
      allowed: true, remaining: '2', reason: 'within_plan', hardStop: true, used: '98', included: '100', limit: '100',
    });
    expect(await check('acme', 'API_CALL', '3')).toEqual({
      allowed: false, remaining: '2', reason: 'limit_reached', hardStop: true, used: '98', included: '100', limit: '100',
    });
    await insertEvents(t().db, Array.from({ length: 5 }, () => ({ tenant: 'acme', feature: 'API_CALL', at: '2026-03-12T00:00:00Z' })));
    expect(await check('acme', 'API_CALL')).toMatchObject({ allowed: false, remaining: '0', used: '103', reason: 'limit_reached' });
  });

  it('uses the last value and a limit above the allowance (overage until the limit, then denied)', async () => {
    await insertEvents(t().db, [
      { tenant: 'bigco', feature: 'SEATS', qty: '30', at: '2026-03-16T00:00:00Z' },
      { tenant: 'bigco', feature: 'SEATS', qty: '24', at: '2026-03-17T00:00:00Z' },
    ]);
    expect(await check('bigco', 'SEATS', '1')).toEqual({
      allowed: true, remaining: '1', reason: 'overage', hardStop: true, used: '24', included: '10', limit: '25',
    });
    expect(await check('bigco', 'SEATS', '2')).toMatchObject({ allowed: false, reason: 'limit_reached' });
  });

  it('treats unlimited, trialing, unique and boolean features per plan', async () => {
    // bigco is trialing on pro: the plan's terms apply.
    expect(await check('bigco', 'API_CALL', '1000000')).toEqual({
      allowed: true, remaining: null, reason: 'within_plan', hardStop: false, used: '0', included: null, limit: null,
    });
    await insertEvents(t().db, [
      { tenant: 'bigco', feature: 'REGIONS', at: '2026-03-16T00:00:00Z', meta: { region: 'eu' } },
      { tenant: 'bigco', feature: 'REGIONS', at: '2026-03-16T00:00:00Z', meta: { region: 'eu' } },
      { tenant: 'bigco', feature: 'REGIONS', at: '2026-03-16T00:00:00Z', meta: { region: 'us' } },
      { tenant: 'bigco', feature: 'REGIONS', at: '2026-03-16T00:00:00Z', meta: { other: 'x' } },
    ]);
    expect(await check('bigco', 'REGIONS')).toMatchObject({ allowed: true, used: '2', remaining: '1', reason: 'within_plan' });
    expect(await check('bigco', 'REGIONS', '2')).toMatchObject({ allowed: false, reason: 'limit_reached' });
    expect(await check('bigco', 'PREMIUM_VOICE')).toEqual({
      allowed: true, remaining: null, reason: 'within_plan', hardStop: false, used: '0', included: null, limit: null,
    });
    expect(await check('acme', 'PREMIUM_VOICE')).toMatchObject({ allowed: false, reason: 'feature_disabled' });
    expect(await check('acme', 'REGIONS')).toMatchObject({ allowed: false, reason: 'feature_not_in_plan' });
  });

  it('applies quota overrides', async () => {
    const { db } = t();
    await insertEvents(db, [{ tenant: 'acme', feature: 'OCR_SCAN', qty: '60', at: '2026-03-11T00:00:00Z' }]);
    expect(await check('acme', 'OCR_SCAN')).toMatchObject({ reason: 'overage', remaining: '0' });
    await setQuota(db, { tenantId: 'acme', featureKey: 'OCR_SCAN', included: '100' }, { now: NOW, actor: ACTOR });
    expect(await check('acme', 'OCR_SCAN')).toMatchObject({ reason: 'within_plan', remaining: '40', included: '100' });
    await setQuota(db, { tenantId: 'acme', featureKey: 'OCR_SCAN', included: '55', hardStop: true, limit: '61' }, { now: NOW, actor: ACTOR });
    expect(await check('acme', 'OCR_SCAN', '2')).toMatchObject({ allowed: false, reason: 'limit_reached', limit: '61', remaining: '1' });
    await setQuota(db, { tenantId: 'acme', featureKey: 'OCR_SCAN', included: null, limit: null, hardStop: false }, { now: NOW, actor: ACTOR });
    expect(await check('acme', 'OCR_SCAN', '5000')).toMatchObject({ allowed: true, reason: 'within_plan', remaining: null });
  });

  it('rejects a bad quantity as an error, not a denial', async () => {
    await expect(check('acme', 'OCR_SCAN', '-1')).rejects.toThrow(/quantity "-1"/);
    await expect(check('acme', 'OCR_SCAN', 'abc')).rejects.toThrow(/not a valid quantity/);
  });

  it('exits 0 when allowed and 3 when denied, with the JSON shape of DESIGN.md §6', async () => {
    const { url } = t();
    const now = '2026-03-20T12:00:00Z';
    const ok = await runCli(['check', 'acme', 'OCR_SCAN', '--json'], { db: url, now });
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({
      allowed: true, remaining: '50', reason: 'within_plan', hardStop: false, used: '0', included: '50', limit: '50', grants: [], credits: null,
    });
    const no = await runCli(['check', 'acme', 'PREMIUM_VOICE'], { db: url, now });
    expect(no.code).toBe(3);
    expect(no.stdout).toMatch(/^denied: acme PREMIUM_VOICE x1: feature disabled/);
    const bad = await runCli(['check', 'acme', 'OCR_SCAN', '--quantity', 'x'], { db: url, now });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/not a valid quantity/);
  });

  it('adds the prepaid balance to --json: grants effective now and not expired nor void, null with no grant', async () => {
    const { db, url } = t();
    const run = (tenantId: string, now: string) => runCli(['check', tenantId, 'OCR_SCAN', '--json'], { db: url, now });
    const credits = async (tenantId: string, now = '2026-03-20T12:00:00Z') => JSON.parse((await run(tenantId, now)).stdout).credits;
    const at = (when: string) => ({ now: iso(when), actor: ACTOR });
    await grantCredit(db, { tenantId: 'acme', amount: '50.00' }, at('2026-03-01T00:00:00Z'));
    await grantCredit(db, { tenantId: 'acme', amount: '30.00', effective: iso('2026-04-01T00:00:00Z') }, at('2026-03-01T00:00:00Z'));
    await grantCredit(db, { tenantId: 'acme', amount: '20.00', expires: iso('2026-03-19T00:00:00Z') }, at('2026-03-01T00:00:00Z'));
    const voided = await grantCredit(db, { tenantId: 'acme', amount: '5.00' }, at('2026-03-01T00:00:00Z'));
    await voidCredit(db, 'acme', voided.id, at('2026-03-02T00:00:00Z'));
    // On the 20th only the 50.00 is live; on the 18th the 20.00 has not expired; in April the 30.00 starts.
    expect(await credits('acme')).toEqual({ balance: '50.00', currency: 'USD' });
    expect(await credits('acme', '2026-03-18T00:00:00Z')).toEqual({ balance: '70.00', currency: 'USD' });
    expect(await credits('acme', '2026-04-02T00:00:00Z')).toEqual({ balance: '80.00', currency: 'USD' });
    // Before any grant took effect: a balance of zero, not null (the tenant has grants).
    expect(await credits('acme', '2026-02-01T00:00:00Z')).toEqual({ balance: '0.00', currency: 'USD' });
    // Other tenants see none of it; an unknown tenant is denied (exit 3) and has none.
    expect(await credits('bigco')).toBeNull();
    const ghost = await run('ghost', '2026-03-20T12:00:00Z');
    expect([ghost.code, JSON.parse(ghost.stdout).credits]).toEqual([3, null]);
    // Text output is unchanged.
    expect((await runCli(['check', 'acme', 'OCR_SCAN'], { db: url, now: '2026-03-20T12:00:00Z' })).stdout).not.toMatch(/credit/);
  });
});
