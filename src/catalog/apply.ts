import type { Knex } from 'knex';
import type { Feature, PlanFeature, PlanVersion } from '../domain/catalog.js';
import type { Instant } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { lockForTransaction } from '../storage/xact-lock.js';
import { diffFeature, diffPlanTerms } from './diff.js';
import { loadCoupons, loadCurrentPlanVersion, loadDefaultTaxRates, loadFeatures } from './repository.js';
import { validateCatalog, type CouponSpec, type TaxRateSpec } from './validate.js';

type Q = Knex | Knex.Transaction;

export interface CatalogChange {
  kind: 'feature' | 'plan' | 'taxes' | 'coupon';
  key: string;
  action: 'create' | 'update' | 'new_version';
  version?: number;
  diff?: string[];
}

export interface ApplyResult {
  noop: boolean;
  changes: CatalogChange[];
}

type Write =
  | { kind: 'taxes'; before: TaxRateSpec[]; after: TaxRateSpec[] }
  | { kind: 'coupon'; action: 'create' | 'update'; before: CouponSpec | null; after: CouponSpec }
  | { kind: 'feature'; action: 'create' | 'update'; before: Feature | null; after: Feature }
  | { kind: 'plan'; action: 'create' | 'new_version'; before: PlanVersion | null; after: PlanVersion }
  | { kind: 'plan'; action: 'update'; before: PlanVersion; after: PlanVersion };

/** Compare the validated file with what is stored; nothing is written here. */
async function planWrites(q: Q, input: unknown): Promise<{ writes: Write[]; changes: CatalogChange[] }> {
  const known = await loadFeatures(q);
  const spec = validateCatalog(input, known);
  const writes: Write[] = [];
  const changes: CatalogChange[] = [];
  for (const f of spec.features) {
    const before = known.get(f.key) ?? null;
    if (!before) {
      writes.push({ kind: 'feature', action: 'create', before: null, after: f });
      changes.push({ kind: 'feature', key: f.key, action: 'create' });
      continue;
    }
    const diff = diffFeature(before, f);
    if (diff.length === 0) continue;
    writes.push({ kind: 'feature', action: 'update', before, after: f });
    changes.push({ kind: 'feature', key: f.key, action: 'update', diff });
  }
  for (const p of spec.plans) {
    const before = await loadCurrentPlanVersion(q, p.planKey);
    if (!before) {
      writes.push({ kind: 'plan', action: 'create', before: null, after: { ...p, version: 1 } });
      changes.push({ kind: 'plan', key: p.planKey, action: 'create', version: 1 });
      continue;
    }
    const terms = diffPlanTerms(before, p);
    const nameDiff = before.name === p.name ? [] : [`name: ${before.name} → ${p.name}`];
    if (terms.length > 0) {
      const after = { ...p, version: before.version + 1 };
      writes.push({ kind: 'plan', action: 'new_version', before, after });
      changes.push({ kind: 'plan', key: p.planKey, action: 'new_version', version: after.version, diff: [...nameDiff, ...terms] });
    } else if (nameDiff.length > 0) {
      // A display name prices nothing: renaming updates the current version in place.
      writes.push({ kind: 'plan', action: 'update', before, after: { ...before, name: p.name } });
      changes.push({ kind: 'plan', key: p.planKey, action: 'update', version: before.version, diff: nameDiff });
    }
  }
  if (spec.taxes !== undefined) {
    const before = await loadDefaultTaxRates(q);
    const show = (ts: TaxRateSpec[]) => (ts.length === 0 ? 'none' : ts.map((t) => `${t.name} ${t.rate}%${t.inclusive ? ' inclusive' : ''}`).join(', '));
    if (show(before) !== show(spec.taxes)) {
      writes.push({ kind: 'taxes', before, after: spec.taxes });
      changes.push({ kind: 'taxes', key: 'default', action: 'update', diff: [`taxes: ${show(before)} → ${show(spec.taxes)}`] });
    }
  }
  const coupons = new Map((await loadCoupons(q)).map((c) => [c.key, c]));
  for (const c of spec.coupons ?? []) {
    const before = coupons.get(c.key) ?? null;
    if (before && JSON.stringify(before) === JSON.stringify(c)) continue;
    writes.push({ kind: 'coupon', action: before ? 'update' : 'create', before, after: c });
    changes.push({ kind: 'coupon', key: c.key, action: before ? 'update' : 'create' });
  }
  return { writes, changes };
}

function featureRow(f: Feature) {
  return {
    name: f.name,
    unit: f.unit,
    type: f.type,
    aggregation: f.aggregation,
    unique_by: f.uniqueBy,
    stripe_meter: f.stripeMeter,
  };
}

function planFeatureRow(planKey: string, version: number, pf: PlanFeature) {
  return {
    plan_key: planKey,
    version,
    feature_key: pf.featureKey,
    enabled: pf.enabled,
    included: pf.included,
    hard_stop: pf.hardStop,
    limit: pf.limit,
    overage: pf.overage === null ? null : JSON.stringify(pf.overage),
    rollover_max: pf.rollover?.max ?? null,
    reset_every: pf.resetEvery ?? null,
    dimension: pf.dimension ?? null,
    prices: pf.prices ? JSON.stringify(pf.prices) : null,
  };
}

async function insertPlanVersion(trx: Knex.Transaction, v: PlanVersion, now: Instant): Promise<void> {
  await trx('plan_versions').insert({
    plan_key: v.planKey,
    version: v.version,
    name: v.name,
    currency: v.currency,
    price: v.price,
    interval: v.interval,
    trial_days: v.trialDays,
    minimum_commitment: v.minimumCommitment ?? null,
    spend_threshold: v.spendThreshold ?? null,
    created_at: now,
  });
  const rows = Object.values(v.features).map((pf) => planFeatureRow(v.planKey, v.version, pf));
  if (rows.length > 0) await trx('plan_features').insert(rows);
}

async function write(trx: Knex.Transaction, w: Write, now: Instant, actor: string): Promise<void> {
  if (w.kind === 'taxes') {
    await trx('default_tax_rates').del();
    if (w.after.length > 0) await trx('default_tax_rates').insert(w.after.map((t) => ({ name: t.name, rate: t.rate, inclusive: t.inclusive })));
    await writeAudit(trx, { at: now, actor, entity: 'tax', entityId: 'default', action: 'update', before: w.before, after: w.after });
    return;
  }
  if (w.kind === 'coupon') {
    const c = w.after;
    const row = { percent: c.percent, amount: c.amount, duration: c.duration, periods: c.periods, features: c.features ? JSON.stringify(c.features) : null, updated_at: now };
    if (w.action === 'create') await trx('coupons').insert({ key: c.key, ...row });
    else await trx('coupons').where({ key: c.key }).update(row);
    await writeAudit(trx, { at: now, actor, entity: 'coupon', entityId: c.key, action: w.action, before: w.before ?? undefined, after: c });
    return;
  }
  if (w.kind === 'feature') {
    if (w.action === 'create') await trx('features').insert({ key: w.after.key, ...featureRow(w.after), created_at: now, updated_at: now });
    else await trx('features').where({ key: w.after.key }).update({ ...featureRow(w.after), updated_at: now });
    await writeAudit(trx, { at: now, actor, entity: 'feature', entityId: w.after.key, action: w.action, before: w.before ?? undefined, after: w.after });
    return;
  }
  const key = w.after.planKey;
  if (w.action === 'create') {
    await trx('plans').insert({ key, current_version: 1, created_at: now, updated_at: now });
    await insertPlanVersion(trx, w.after, now);
  } else if (w.action === 'new_version') {
    await insertPlanVersion(trx, w.after, now);
    await trx('plans').where({ key }).update({ current_version: w.after.version, updated_at: now });
  } else {
    await trx('plan_versions').where({ plan_key: key, version: w.after.version }).update({ name: w.after.name });
    await trx('plans').where({ key }).update({ updated_at: now });
  }
  await writeAudit(trx, {
    at: now,
    actor,
    entity: 'plan',
    entityId: key,
    action: w.action,
    before: w.before ?? undefined,
    after: w.after,
  });
}

/**
 * Apply a catalog document (DESIGN.md §3) atomically. Features update in place; any change
 * to a plan's terms adds a plan version (subscriptions keep theirs); a rename alone updates
 * the current version. Entries absent from the document are left alone. Applying the same
 * document twice changes nothing and writes no audit rows.
 */
export async function applyCatalog(
  db: Db,
  input: unknown,
  opts: { now: Instant; actor: string; dryRun?: boolean },
): Promise<ApplyResult> {
  if (opts.dryRun) {
    const { changes } = await planWrites(db.knex, input);
    return { noop: changes.length === 0, changes };
  }
  return db.tx(async (tdb) => {
    const trx = tdb.trx!;
    // Two applies at once would both see version N and both write N+1: take turns.
    await lockForTransaction(tdb, 'catalog', 'apply');
    const { writes, changes } = await planWrites(trx, input);
    for (const w of writes) await write(trx, w, opts.now, opts.actor);
    return { noop: changes.length === 0, changes };
  });
}
