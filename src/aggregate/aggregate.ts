import type { Knex } from 'knex';
import { loadFeatures } from '../catalog/repository.js';
import type { Feature } from '../domain/catalog.js';
import type { Instant } from '../domain/period.js';
import { insertIgnoringConflicts } from '../storage/bulk-insert.js';
import type { Db } from '../storage/db.js';
import { withTx } from '../storage/sql.js';
import { subscriptionFromRow, type Subscription } from '../subscriptions/repository.js';
import { selectWindow, type PeriodSpec } from './periods.js';
import {
  BUCKET_SQL,
  bucketOf,
  bucketStart,
  groupsTableSource,
  insertSummaries,
  usageSelects,
  windowsTableSource,
  type GroupRow,
  type UsageSource,
} from './usage-sql.js';
import {
  capHoles,
  findGaps,
  lockState,
  saveState,
  snapshotXmax,
  snapshotXmin,
  unseenCondition,
  type AggregateState,
  type Hole,
} from './watermark.js';
import { TenantTimeline, type Window } from './windows.js';

export interface AggregateOptions {
  now: Instant;
  /** Rebuild this tenant's summaries only (the watermark is left alone). */
  tenantId?: string;
  /** Rebuild every summary from all events. */
  full?: boolean;
  /** Recompute one period (`current`, `previous`, `YYYY-MM`) per tenant in scope. */
  period?: PeriodSpec;
}

export interface AggregateResult {
  /** Summaries (tenant × feature × period) written. */
  groups: number;
  /** Events those summaries were computed from. */
  events: number;
  full: boolean;
  /** Highest usage_events.seq seen so far. */
  watermark: number | null;
}

interface Run {
  db: Db;
  trx: Knex.Transaction;
  now: Instant;
  features: Feature[];
  subs: Map<string, Subscription[]>;
  timelines: Map<string, TenantTimeline>;
}

/**
 * The `billing aggregate` stage: usage_summaries per tenant × feature × billing period
 * (src/aggregate/README.md). Incremental by default: only the groups that received events
 * since the last run are recomputed, each from all its events. Runs are serialized and atomic.
 */
export async function runAggregate(db: Db, opts: AggregateOptions): Promise<AggregateResult> {
  return withTx(db, async (trx) => {
    // Before this transaction writes anything, so that it is not its own oldest transaction.
    const xmin = db.dialect === 'pg' ? await snapshotXmin(trx) : null;
    const state = await lockState(db, trx, opts.now);
    const run: Run = {
      db,
      trx,
      now: opts.now,
      features: [...(await loadFeatures(trx)).values()].filter((f) => f.type !== 'boolean'),
      subs: await loadSubscriptions(trx, opts.tenantId),
      timelines: new Map(),
    };
    const counts = { groups: 0, events: 0 };
    const add = (c: { groups: number; events: number }) => {
      counts.groups += c.groups;
      counts.events += c.events;
    };

    if (opts.period !== undefined) {
      const tenantIds = opts.tenantId !== undefined ? [opts.tenantId] : await allTenantIds(trx);
      add(await recomputePeriod(run, tenantIds, opts.period));
      return { ...counts, full: false, watermark: state.watermark };
    }
    if (opts.tenantId !== undefined) {
      add(await rebuildTenants(run, [opts.tenantId], false));
      await saveFingerprints(run, [opts.tenantId]);
      return { ...counts, full: true, watermark: state.watermark };
    }

    const full = opts.full === true || state.watermark === null;
    const seen = state.watermark ?? 0;
    const upTo = Math.max(seen, await maxSeq(trx));
    // PostgreSQL: seqs not visible yet are noted before reading events, so that one
    // committing meanwhile is either read now or re-read later, never skipped.
    const fresh: Hole[] = [];
    if (db.dialect === 'pg') {
      const gaps = await findGaps(trx, seen, upTo);
      const xid = await snapshotXmax(trx);
      for (const g of gaps) fresh.push({ ...g, xid });
    }
    if (full) {
      add(await rebuildTenants(run, await allTenantIds(trx), true));
      await saveFingerprints(run, await fingerprintedTenants(run));
    } else {
      const dirty = await dirtyTenants(run);
      if (dirty.length > 0) {
        add(await rebuildTenants(run, dirty, false));
        await saveFingerprints(run, dirty);
      }
      add(await recomputeTouched(run, { watermark: seen, holes: state.holes }, upTo, new Set(dirty)));
    }
    // A hole stays until every transaction that could still fill it had ended when this run began.
    const kept = xmin === null ? [] : state.holes.filter((h) => BigInt(h.xid) > xmin);
    const next: AggregateState = { watermark: upTo, holes: capHoles([...kept, ...fresh]) };
    await saveState(trx, next, opts.now);
    return { ...counts, full, watermark: next.watermark };
  });
}

async function loadSubscriptions(trx: Knex.Transaction, tenantId?: string): Promise<Map<string, Subscription[]>> {
  const rows = await trx('subscriptions')
    .modify((b) => {
      if (tenantId !== undefined) b.where({ tenant_id: tenantId });
    })
    .orderBy(['tenant_id', 'started_at', 'id']);
  const out = new Map<string, Subscription[]>();
  for (const r of rows) {
    const s = subscriptionFromRow(r);
    if (!out.has(s.tenantId)) out.set(s.tenantId, []);
    out.get(s.tenantId)!.push(s);
  }
  return out;
}

async function allTenantIds(trx: Knex.Transaction): Promise<string[]> {
  return (await trx('tenants').select('id').orderBy('id')).map((r) => r.id as string);
}

async function maxSeq(trx: Knex.Transaction): Promise<number> {
  const r = await trx('usage_events').max({ m: 'seq' }).first();
  return r?.m === null || r?.m === undefined ? 0 : Number(r.m);
}

function timeline(run: Run, tenantId: string): TenantTimeline {
  let t = run.timelines.get(tenantId);
  if (!t) run.timelines.set(tenantId, (t = new TenantTimeline(run.subs.get(tenantId) ?? [])));
  return t;
}

// ---- tenants whose periods moved (fingerprint of the subscriptions that cut them) ----

function windowsKey(subs: Subscription[] | undefined): string {
  return (subs ?? []).map((s) => `${s.id}@${s.anchorAt}/${s.interval}/${s.startedAt}-${s.cancelAt ?? ''}`).join(',');
}

async function storedKeys(run: Run): Promise<Map<string, string>> {
  const rows = await run.trx('aggregate_tenants').select('tenant_id', 'windows_key');
  return new Map(rows.map((r) => [r.tenant_id as string, r.windows_key as string]));
}

/** Tenants whose subscriptions changed since their summaries were cut (a start, a cancellation). */
async function dirtyTenants(run: Run): Promise<string[]> {
  const stored = await storedKeys(run);
  const ids = new Set([...run.subs.keys(), ...stored.keys()]);
  return [...ids].filter((id) => windowsKey(run.subs.get(id)) !== (stored.get(id) ?? '')).sort();
}

async function fingerprintedTenants(run: Run): Promise<string[]> {
  return [...new Set([...run.subs.keys(), ...(await storedKeys(run)).keys()])];
}

async function saveFingerprints(run: Run, tenantIds: string[]): Promise<void> {
  for (let i = 0; i < tenantIds.length; i += 500) {
    const ids = tenantIds.slice(i, i + 500);
    await run.trx('aggregate_tenants').whereIn('tenant_id', ids).del();
    const rows = ids.map((id) => ({ tenant_id: id, windows_key: windowsKey(run.subs.get(id)) })).filter((r) => r.windows_key !== '');
    if (rows.length > 0) await run.trx('aggregate_tenants').insert(rows);
  }
}

// ---- scratch tables ----

async function clearScratch(run: Run): Promise<void> {
  await run.trx('aggregate_windows').del();
  await run.trx('aggregate_groups').del();
}

/** Windows, cut at bucket boundaries (see usage-sql.ts). */
async function writeWindows(run: Run, windows: Array<{ tenantId: string; window: Window }>): Promise<void> {
  const rows: unknown[][] = [];
  for (const { tenantId, window: w } of windows) {
    for (let b = bucketOf(w.start); bucketStart(b) < w.end; b++) {
      rows.push([tenantId, b, Math.max(w.start, bucketStart(b)), Math.min(w.end, bucketStart(b + 1)), w.start, w.end, w.subscription?.id ?? null]);
    }
  }
  await insertIgnoringConflicts(run.db, run.trx, {
    table: 'aggregate_windows',
    columns: ['tenant_id', 'bucket', 'lo', 'hi', 'period_start', 'period_end', 'subscription_id'],
    conflict: ['tenant_id', 'bucket', 'lo'],
  }, rows);
}

async function writeGroups(run: Run, groups: GroupRow[]): Promise<void> {
  await insertIgnoringConflicts(run.db, run.trx, {
    table: 'aggregate_groups',
    columns: ['tenant_id', 'feature_key', 'period_start', 'period_end', 'subscription_id'],
    conflict: ['tenant_id', 'feature_key', 'period_start'],
  }, groups.map((g) => [g.tenantId, g.featureKey, g.periodStart, g.periodEnd, g.subscriptionId]));
}

async function insertFrom(run: Run, src: UsageSource): Promise<void> {
  for (const select of usageSelects(run.db, src, run.features)) await insertSummaries(run.trx, select, run.now);
}

async function countWritten(run: Run, scratch: 'aggregate_groups' | 'aggregate_windows'): Promise<{ groups: number; events: number }> {
  const match =
    scratch === 'aggregate_groups'
      ? 'g.tenant_id = s.tenant_id AND g.feature_key = s.feature_key AND g.period_start = s.period_start'
      : 'g.tenant_id = s.tenant_id AND g.period_start = s.period_start';
  const r = await run.trx.raw(
    `SELECT COUNT(*) AS n, CAST(SUM(s.event_count) AS TEXT) AS events FROM usage_summaries s ` +
      `WHERE EXISTS (SELECT 1 FROM ${scratch} g WHERE ${match})`,
  );
  const row = (run.db.dialect === 'pg' ? r.rows : r)[0];
  return { groups: Number(row.n), events: Number(row.events ?? 0) };
}

// ---- the three ways of choosing what to recompute ----

/**
 * Rebuild tenants from all their events: every window from their first to their last event.
 * Summaries outside that span are kept (events past retention are gone, their summaries stay).
 * `scan`: one pass over usage_events (the full rebuild); otherwise per group by index.
 */
async function rebuildTenants(run: Run, tenantIds: string[], scan: boolean): Promise<{ groups: number; events: number }> {
  const ranges = await featureRanges(run, tenantIds);
  const windows: Array<{ tenantId: string; window: Window }> = [];
  const groups: GroupRow[] = [];
  for (const [tenantId, byFeature] of ranges) {
    const spans = [...byFeature.values()];
    const ws = timeline(run, tenantId).windowsBetween(Math.min(...spans.map((s) => s.min)), Math.max(...spans.map((s) => s.max)) + 1);
    for (const w of ws) windows.push({ tenantId, window: w });
    if (scan) continue;
    for (const [featureKey, { min, max }] of byFeature) {
      for (const w of ws) {
        if (w.end > min && w.start <= max) {
          groups.push({ tenantId, featureKey, periodStart: w.start, periodEnd: w.end, subscriptionId: w.subscription?.id ?? null });
        }
      }
    }
  }
  await clearScratch(run);
  await writeWindows(run, windows);
  await run.trx.raw(
    'DELETE FROM usage_summaries WHERE EXISTS (SELECT 1 FROM aggregate_windows w WHERE w.tenant_id = usage_summaries.tenant_id ' +
      'AND w.period_start < usage_summaries.period_end AND usage_summaries.period_start < w.period_end)',
  );
  if (scan) {
    await fullScan(run, () => insertFrom(run, windowsTableSource(run.db)));
    return countWritten(run, 'aggregate_windows');
  }
  await writeGroups(run, groups);
  await insertFrom(run, groupsTableSource('aggregate_groups'));
  return countWritten(run, 'aggregate_groups');
}

/** First and last event instant per tenant and feature, by index seeks (no table scan). */
async function featureRanges(run: Run, tenantIds: string[]): Promise<Map<string, Map<string, { min: number; max: number }>>> {
  const out = new Map<string, Map<string, { min: number; max: number }>>();
  const seek = (fn: string) =>
    `(SELECT ${fn}(e.occurred_at) FROM usage_events e WHERE e.tenant_id = t.id AND e.feature_key = f.key)`;
  for (let i = 0; i < tenantIds.length; i += 500) {
    const ids = tenantIds.slice(i, i + 500);
    const r = await run.trx.raw(
      `SELECT tenant_id, feature_key, lo, hi FROM (SELECT t.id AS tenant_id, f.key AS feature_key, ${seek('MIN')} AS lo, ${seek('MAX')} AS hi ` +
        `FROM tenants t CROSS JOIN features f WHERE t.id IN (${ids.map(() => '?').join(', ')})) x WHERE lo IS NOT NULL`,
      ids,
    );
    for (const row of (run.db.dialect === 'pg' ? r.rows : r) as Array<Record<string, unknown>>) {
      const tenantId = String(row.tenant_id);
      if (!out.has(tenantId)) out.set(tenantId, new Map());
      out.get(tenantId)!.set(String(row.feature_key), { min: Number(row.lo), max: Number(row.hi) });
    }
  }
  return out;
}

/** Recompute the groups that received events the previous runs had not seen. */
async function recomputeTouched(
  run: Run,
  seen: { watermark: number; holes: Hole[] },
  upTo: number,
  skip: Set<string>,
): Promise<{ groups: number; events: number }> {
  const unseen = unseenCondition(seen, upTo);
  const spans = await run.trx.raw(
    `SELECT e.tenant_id, MIN(e.occurred_at) AS lo, MAX(e.occurred_at) AS hi FROM usage_events e WHERE ${unseen.sql} GROUP BY e.tenant_id`,
    unseen.bindings,
  );
  const windows: Array<{ tenantId: string; window: Window }> = [];
  for (const s of (run.db.dialect === 'pg' ? spans.rows : spans) as Array<Record<string, unknown>>) {
    const tenantId = String(s.tenant_id);
    if (skip.has(tenantId)) continue;
    for (const w of timeline(run, tenantId).windowsBetween(Number(s.lo), Number(s.hi) + 1)) windows.push({ tenantId, window: w });
  }
  if (windows.length === 0) return { groups: 0, events: 0 };
  await clearScratch(run);
  await writeWindows(run, windows);
  await run.trx.raw(
    'INSERT INTO aggregate_groups (tenant_id, feature_key, period_start, period_end, subscription_id) ' +
      'SELECT DISTINCT w.tenant_id, e.feature_key, w.period_start, w.period_end, w.subscription_id FROM usage_events e ' +
      `JOIN aggregate_windows w ON w.tenant_id = e.tenant_id AND w.bucket = ${BUCKET_SQL} AND e.occurred_at >= w.lo AND e.occurred_at < w.hi ` +
      `WHERE ${unseen.sql}`,
    unseen.bindings,
  );
  return recomputeGroups(run);
}

/** Recompute one named period (current, previous, YYYY-MM) of each tenant. */
async function recomputePeriod(run: Run, tenantIds: string[], spec: PeriodSpec): Promise<{ groups: number; events: number }> {
  const groups: GroupRow[] = [];
  for (const tenantId of tenantIds) {
    const w = selectWindow(timeline(run, tenantId), spec, run.now);
    for (const f of run.features) {
      groups.push({ tenantId, featureKey: f.key, periodStart: w.start, periodEnd: w.end, subscriptionId: w.subscription?.id ?? null });
    }
  }
  await clearScratch(run);
  await writeGroups(run, groups);
  return recomputeGroups(run);
}

/** Replace the summaries of the groups in aggregate_groups (and any stale one overlapping them). */
async function recomputeGroups(run: Run): Promise<{ groups: number; events: number }> {
  await run.trx.raw(
    'DELETE FROM usage_summaries WHERE EXISTS (SELECT 1 FROM aggregate_groups g WHERE g.tenant_id = usage_summaries.tenant_id ' +
      'AND g.feature_key = usage_summaries.feature_key AND g.period_start < usage_summaries.period_end ' +
      'AND usage_summaries.period_start < g.period_end)',
  );
  await insertFrom(run, groupsTableSource('aggregate_groups'));
  return countWritten(run, 'aggregate_groups');
}

/**
 * PostgreSQL misjudges how many events match a (tenant, bucket) window and would walk the
 * index once per window; for the one full pass, insist on hashing.
 */
async function fullScan(run: Run, fn: () => Promise<void>): Promise<void> {
  if (run.db.dialect !== 'pg') return fn();
  await run.trx.raw('SET LOCAL enable_nestloop = off');
  await run.trx.raw('SET LOCAL enable_mergejoin = off');
  try {
    await fn();
  } finally {
    await run.trx.raw('SET LOCAL enable_nestloop TO DEFAULT');
    await run.trx.raw('SET LOCAL enable_mergejoin TO DEFAULT');
  }
}
