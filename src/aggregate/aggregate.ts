import type { Knex } from 'knex';
import { loadFeatures } from '../catalog/repository.js';
import type { Feature } from '../domain/catalog.js';
import { EVENT_TIMES, type Instant } from '../domain/period.js';
import { forDialect, type Db } from '../storage/db.js';
import { subscriptionFromRow, type Subscription } from '../subscriptions/repository.js';
import { pgAggregate } from './aggregate-pg.js';
import { sqliteAggregate } from './aggregate-sqlite.js';
import type { AggregateDialect, Counts, TenantWindow } from './dialect.js';
import { insertGroupsByIndex } from './per-group.js';
import { selectWindow, type PeriodSpec } from './periods.js';
import { bulkInsert, countWritten } from './scratch.js';
import {
  EVENTS_TO_WINDOWS,
  DELTA_TO_WINDOWS,
  deltaSource,
  mergeSummaries,
  uniqueValue,
  type GroupRow,
  type SqlPart,
} from './usage-sql.js';
import { capHoles, inHoles, lockState, saveState, seqRange, type Hole } from './watermark.js';
import { TenantTimeline, windowsKey } from './windows.js';

export interface AggregateOptions {
  now: Instant;
  /** After bringing everything up to date, rebuild this tenant's summaries from all its events. */
  tenantId?: string;
  /** Rebuild every summary from all events (with tenantId: that tenant's). */
  full?: boolean;
  /** After bringing everything up to date, recompute this period (`current`, `previous`, `YYYY-MM`). */
  period?: PeriodSpec;
}

export interface AggregateResult {
  /** Summaries (tenant × feature × period) written or updated. */
  groups: number;
  /** Events read to do so. */
  events: number;
  /** A rebuild of every summary. */
  full: boolean;
  /** Highest usage_events.seq folded in. */
  watermark: number | null;
  /** Events read whose time lies outside EVENT_TIMES, per tenant: in no period, so not counted. */
  outOfRange: Array<{ tenantId: string; events: number }>;
}

interface Run {
  /** The run's transaction. */
  db: Db;
  sql: AggregateDialect;
  now: Instant;
  features: Feature[];
  subs: Map<string, Subscription[]>;
  timelines: Map<string, TenantTimeline>;
  /** Only events with seq <= upTo are read (see watermark.ts). */
  upTo: number;
  /** Out-of-range events met, per tenant. */
  outOfRange: Map<string, number>;
}

// Events outside EVENT_TIMES belong to no period (and may have no calendar date at all).
const IN_RANGE = `e.occurred_at >= ${EVENT_TIMES.start} AND e.occurred_at < ${EVENT_TIMES.end}`;

/**
 * The `billing aggregate` stage: usage_summaries per tenant × feature × billing period
 * (src/aggregate/README.md). Incremental: the events ingested since the last run are merged
 * into their summaries (sum, count, max, min, last); unique counts and groups touched by
 * late-committed events are recomputed from all their events. Runs are serialized and atomic.
 */
export async function runAggregate(db: Db, opts: AggregateOptions): Promise<AggregateResult> {
  const sql = forDialect(db, { pg: pgAggregate, sqlite: sqliteAggregate });
  return db.tx(async (t) => {
    const trx = t.knex;
    const xmin = await sql.oldestRunning(t);
    const state = await lockState(t, opts.now);
    const seen = state.watermark ?? 0;
    const run: Run = {
      db: t,
      sql,
      now: opts.now,
      features: [...(await loadFeatures(trx)).values()].filter((f) => f.type !== 'boolean'),
      subs: await loadSubscriptions(trx),
      timelines: new Map(),
      outOfRange: new Map(),
      upTo: Math.max(seen, await maxSeq(trx)),
    };
    const fresh = await sql.newHoles(t, seen, run.upTo);
    const counts: Counts = { groups: 0, events: 0 };
    const add = (c: Counts) => {
      counts.groups += c.groups;
      counts.events += c.events;
    };

    const full = opts.full === true && opts.tenantId === undefined && opts.period === undefined;
    if (full || state.watermark === null) {
      add(await rebuildTenants(run, await allTenantIds(trx), 'scan'));
      await saveFingerprints(run, await fingerprintedTenants(run));
    } else {
      const dirty = await dirtyTenants(run);
      if (dirty.length > 0) {
        add(await rebuildTenants(run, dirty, 'groups'));
        await saveFingerprints(run, dirty);
      }
      add(await foldNewEvents(run, seen, state.holes, new Set(dirty)));
    }
    if (opts.period !== undefined) {
      add(await recomputePeriod(run, opts.tenantId !== undefined ? [opts.tenantId] : await allTenantIds(trx), opts.period));
    } else if (opts.tenantId !== undefined) {
      add(await rebuildTenants(run, [opts.tenantId], 'groups'));
      await saveFingerprints(run, [opts.tenantId]);
    }

    // A hole stays until every transaction that could still fill it had ended when this run began.
    const kept = xmin === null ? [] : [...state.holes, ...fresh].filter((h) => BigInt(h.xid) > xmin);
    await saveState(t, { watermark: run.upTo, holes: capHoles(kept) }, opts.now);
    const outOfRange = [...run.outOfRange].map(([tenantId, events]) => ({ tenantId, events }));
    return { ...counts, full: full || state.watermark === null, watermark: run.upTo, outOfRange };
  });
}

async function loadSubscriptions(trx: Knex): Promise<Map<string, Subscription[]>> {
  const out = new Map<string, Subscription[]>();
  for (const r of await trx('subscriptions').orderBy(['tenant_id', 'started_at', 'id'])) {
    const s = subscriptionFromRow(r);
    if (!out.has(s.tenantId)) out.set(s.tenantId, []);
    out.get(s.tenantId)!.push(s);
  }
  return out;
}

async function allTenantIds(trx: Knex): Promise<string[]> {
  return (await trx('tenants').select('id').orderBy('id')).map((r) => r.id as string);
}

async function maxSeq(trx: Knex): Promise<number> {
  const r = await trx('usage_events').max({ m: 'seq' }).first();
  return r?.m === null || r?.m === undefined ? 0 : Number(r.m);
}

function timeline(run: Run, tenantId: string): TenantTimeline {
  let t = run.timelines.get(tenantId);
  if (!t) run.timelines.set(tenantId, (t = new TenantTimeline(run.subs.get(tenantId) ?? [])));
  return t;
}

// ---- tenants whose periods moved (fingerprint of the subscriptions that cut them) ----

async function storedKeys(run: Run): Promise<Map<string, string>> {
  const rs = await run.db.knex('aggregate_tenants').select('tenant_id', 'windows_key');
  return new Map(rs.map((r) => [r.tenant_id as string, r.windows_key as string]));
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
    await run.db.knex('aggregate_tenants').whereIn('tenant_id', ids).del();
    const rs = ids.map((id) => ({ tenant_id: id, windows_key: windowsKey(run.subs.get(id)) })).filter((r) => r.windows_key !== '');
    if (rs.length > 0) await run.db.knex('aggregate_tenants').insert(rs);
  }
}

// ---- scratch tables ----

/** Groups to recompute whole. */
async function writeGroups(run: Run, groups: GroupRow[]): Promise<void> {
  await bulkInsert(run.db, {
    table: 'aggregate_groups',
    columns: ['tenant_id', 'feature_key', 'period_start', 'period_end', 'subscription_id', 'whole'],
    conflict: ['tenant_id', 'feature_key', 'period_start'],
  }, groups.map((g) => [g.tenantId, g.featureKey, g.periodStart, g.periodEnd, g.subscriptionId, 1]));
}

// ---- the ways of choosing what to compute ----

/**
 * Rebuild tenants from all their events: every window from their first to their last event.
 * Summaries outside that span are kept (events past retention are gone, their summaries stay).
 * `scan`: one pass over usage_events (the full rebuild); `groups`: per group by index.
 */
async function rebuildTenants(run: Run, tenantIds: string[], how: 'scan' | 'groups'): Promise<Counts> {
  const ranges = await featureRanges(run, tenantIds);
  const windows: TenantWindow[] = [];
  const groups: GroupRow[] = [];
  for (const [tenantId, byFeature] of ranges) {
    const spans = [...byFeature.values()];
    const ws = timeline(run, tenantId).windowsBetween(Math.min(...spans.map((s) => s.min)), Math.max(...spans.map((s) => s.max)) + 1);
    for (const w of ws) windows.push({ tenantId, window: w });
    if (how === 'scan') continue;
    for (const [featureKey, { min, max }] of byFeature) {
      for (const w of ws) {
        if (w.end > min && w.start <= max) {
          groups.push({ tenantId, featureKey, periodStart: w.start, periodEnd: w.end, subscriptionId: w.subscription?.id ?? null });
        }
      }
    }
  }
  await run.sql.clearScratch(run.db);
  await run.sql.writeWindows(run.db, windows);
  await run.db.knex.raw(
    'DELETE FROM usage_summaries WHERE EXISTS (SELECT 1 FROM aggregate_windows w WHERE w.tenant_id = usage_summaries.tenant_id ' +
      'AND w.period_start < usage_summaries.period_end AND usage_summaries.period_start < w.period_end)',
  );
  await deleteOrphanValues(run, 'aggregate_windows');
  if (how === 'scan') return run.sql.rebuildWindows(run.db, run.features, run.upTo, run.now);
  await writeGroups(run, groups);
  await insertGroupsByIndex(run.db, 'whole-groups', run.features, run.upTo, run.now);
  return countWritten(run.db, 'aggregate_groups');
}

/** First and last event instant per tenant and feature, by index seeks (no table scan). */
async function featureRanges(run: Run, tenantIds: string[]): Promise<Map<string, Map<string, { min: number; max: number }>>> {
  const out = new Map<string, Map<string, { min: number; max: number }>>();
  const seek = (fn: string) => `(SELECT ${fn}(e.occurred_at) FROM usage_events e WHERE e.tenant_id = t.id AND e.feature_key = f.key AND ${IN_RANGE})`;
  const outside = '(SELECT COUNT(*) FROM usage_events e WHERE e.tenant_id = t.id AND e.feature_key = f.key ' +
    `AND (e.occurred_at < ${EVENT_TIMES.start} OR e.occurred_at >= ${EVENT_TIMES.end}))`;
  for (let i = 0; i < tenantIds.length; i += 500) {
    const ids = tenantIds.slice(i, i + 500);
    const res = await run.db.rows<Record<string, unknown>>(
      `SELECT tenant_id, feature_key, lo, hi, outside FROM (SELECT t.id AS tenant_id, f.key AS feature_key, ${seek('MIN')} AS lo, ${seek('MAX')} AS hi, ` +
        `${outside} AS outside FROM tenants t CROSS JOIN features f WHERE t.id IN (${ids.map(() => '?').join(', ')})) x WHERE lo IS NOT NULL OR outside > 0`,
      ids,
    );
    for (const r of res) {
      const tenantId = String(r.tenant_id);
      noteOutOfRange(run, tenantId, Number(r.outside));
      if (r.lo === null) continue;
      if (!out.has(tenantId)) out.set(tenantId, new Map());
      out.get(tenantId)!.set(String(r.feature_key), { min: Number(r.lo), max: Number(r.hi) });
    }
  }
  return out;
}

function noteOutOfRange(run: Run, tenantId: string, events: number): void {
  if (events > 0) run.outOfRange.set(tenantId, (run.outOfRange.get(tenantId) ?? 0) + events);
}

/**
 * Fold in the events with seq in (seen, upTo]: merged into their summaries, except in groups
 * that also received an event in a hole (it may or may not have been folded in already):
 * those are recomputed whole.
 */
async function foldNewEvents(run: Run, seen: number, holes: Hole[], skip: Set<string>): Promise<Counts> {
  const fresh = seqRange(seen, run.upTo);
  const late = inHoles(holes);
  const touched: SqlPart = late ? { sql: `(${fresh.sql} OR ${late.sql})`, bindings: [...fresh.bindings, ...late.bindings] } : fresh;
  const spans = await run.db.rows<Record<string, unknown>>(
    `SELECT e.tenant_id, MIN(CASE WHEN ${IN_RANGE} THEN e.occurred_at END) AS lo, MAX(CASE WHEN ${IN_RANGE} THEN e.occurred_at END) AS hi, ` +
      `COUNT(*) AS n, SUM(CASE WHEN ${IN_RANGE} THEN 0 ELSE 1 END) AS outside FROM ${run.sql.newEvents} WHERE ${touched.sql} GROUP BY e.tenant_id`,
    touched.bindings,
  );
  const windows: TenantWindow[] = [];
  let events = 0;
  for (const s of spans) {
    const tenantId = String(s.tenant_id);
    if (skip.has(tenantId)) continue;
    noteOutOfRange(run, tenantId, Number(s.outside));
    if (s.lo === null) continue;
    events += Number(s.n) - Number(s.outside);
    for (const w of timeline(run, tenantId).windowsBetween(Number(s.lo), Number(s.hi) + 1)) windows.push({ tenantId, window: w });
  }
  if (windows.length === 0 || run.features.length === 0) return { groups: 0, events: 0 };
  if (run.sql.mergeFresh && late === null) {
    return { groups: await run.sql.mergeFresh(run.db, run.features, windows, seen, run.upTo, run.now), events };
  }
  await run.sql.clearScratch(run.db);
  await run.sql.writeWindows(run.db, windows);
  // Read the new events once, with their windows; everything below works from this copy.
  await run.db.knex.raw(
    'INSERT INTO aggregate_delta (window_id, feature_key, quantity, occurred_at, seq, user_id, metadata, fresh) ' +
      `SELECT w.window_id, e.feature_key, e.quantity, e.occurred_at, e.seq, e.user_id, e.metadata, CASE WHEN ${fresh.sql} THEN 1 ELSE 0 END ` +
      `FROM ${EVENTS_TO_WINDOWS} WHERE ${touched.sql} AND e.feature_key IN (${run.features.map(() => '?').join(', ')})`,
    [...fresh.bindings, ...touched.bindings, ...run.features.map((f) => f.key)],
  );
  await run.sql.analyzeScratch(run.db);
  // The groups touched, `whole` when one got a late event. With no late event (SQLite's only
  // case) every group merges, and only the unique ones need a row, for fillValueSets.
  const uniques = run.features.filter((f) => f.aggregation === 'unique').map((f) => f.key);
  const noted = late ? null : uniques;
  if (noted === null || noted.length > 0) {
    await run.db.knex.raw(
      'INSERT INTO aggregate_groups (tenant_id, feature_key, period_start, period_end, subscription_id, whole) ' +
        `SELECT w.tenant_id, e.feature_key, w.period_start, w.period_end, w.subscription_id, MAX(1 - e.fresh) FROM ${DELTA_TO_WINDOWS} ` +
        (noted ? `WHERE e.feature_key IN (${noted.map(() => '?').join(', ')}) ` : '') +
        'GROUP BY w.tenant_id, e.feature_key, w.period_start, w.period_end, w.subscription_id',
      noted ?? [],
    );
  }
  await fillValueSets(run, seen);
  const merged: SqlPart = {
    sql: late
      ? 'e.fresh = 1 AND NOT EXISTS (SELECT 1 FROM aggregate_groups g WHERE g.tenant_id = w.tenant_id ' +
        'AND g.feature_key = e.feature_key AND g.period_start = w.period_start AND g.whole = 1)'
      : 'e.fresh = 1',
    bindings: [],
  };
  const written = await mergeSummaries(run.db, deltaSource(merged), run.features, run.now);
  const recomputed = late ? await recomputeWholeGroups(run) : { groups: 0, events: 0 };
  return { groups: written + recomputed.groups, events };
}

/**
 * A unique summary merges new values into its group's value set, so the set must be whole.
 * PostgreSQL's full rebuild writes none (full-scan-pg.ts): a merged group with a count but no
 * set gets it now, from its events already folded in (seq <= seen; groups with a late event
 * are recomputed whole instead).
 */
async function fillValueSets(run: Run, seen: number): Promise<void> {
  for (const f of run.features.filter((x) => x.aggregation === 'unique')) {
    const value = uniqueValue(run.db, f);
    // Driven from the groups (SQLite keeps a CROSS JOIN's order), each group's events by their
    // time range: SQLite would otherwise walk every event of the feature by (tenant, feature, seq).
    await run.db.knex.raw(
      'INSERT INTO usage_unique_values (tenant_id, feature_key, period_start, value) SELECT DISTINCT g.tenant_id, g.feature_key, g.period_start, ? ' +
        'FROM aggregate_groups g CROSS JOIN usage_summaries s CROSS JOIN usage_events e ' +
        'WHERE s.tenant_id = g.tenant_id AND s.feature_key = g.feature_key AND s.period_start = g.period_start ' +
        'AND e.tenant_id = g.tenant_id AND e.feature_key = g.feature_key AND e.occurred_at >= g.period_start ' +
        'AND e.occurred_at < g.period_end AND +e.seq <= ? AND g.whole = 0 AND g.feature_key = ? AND s.quantity > 0 AND ? IS NOT NULL ' +
        'AND NOT EXISTS (SELECT 1 FROM usage_unique_values u WHERE u.tenant_id = g.tenant_id AND u.feature_key = g.feature_key ' +
        'AND u.period_start = g.period_start) ON CONFLICT DO NOTHING',
      [value, seen, f.key, value],
    );
  }
}

/** Drop the unique-value sets of the scratch tenants' summaries that were just deleted. */
async function deleteOrphanValues(run: Run, scratch: 'aggregate_windows' | 'aggregate_groups'): Promise<void> {
  await run.db.knex.raw(
    `DELETE FROM usage_unique_values WHERE tenant_id IN (SELECT tenant_id FROM ${scratch}) AND NOT EXISTS (` +
      'SELECT 1 FROM usage_summaries s WHERE s.tenant_id = usage_unique_values.tenant_id ' +
      'AND s.feature_key = usage_unique_values.feature_key AND s.period_start = usage_unique_values.period_start)',
  );
}

/** Recompute one named period (current, previous, YYYY-MM) of each tenant. */
async function recomputePeriod(run: Run, tenantIds: string[], spec: PeriodSpec): Promise<Counts> {
  const groups: GroupRow[] = [];
  for (const tenantId of tenantIds) {
    const w = selectWindow(timeline(run, tenantId), spec, run.now);
    for (const f of run.features) {
      groups.push({ tenantId, featureKey: f.key, periodStart: w.start, periodEnd: w.end, subscriptionId: w.subscription?.id ?? null });
    }
  }
  await run.sql.clearScratch(run.db);
  await writeGroups(run, groups);
  return recomputeWholeGroups(run);
}

/** Replace the summaries of the whole groups in aggregate_groups (and any stale one overlapping them). */
async function recomputeWholeGroups(run: Run): Promise<Counts> {
  const keys = new Set((await run.db.knex('aggregate_groups').distinct('feature_key').where({ whole: 1 })).map((r) => r.feature_key as string));
  if (keys.size === 0) return { groups: 0, events: 0 };
  await run.db.knex.raw(
    'DELETE FROM usage_summaries WHERE EXISTS (SELECT 1 FROM aggregate_groups g WHERE g.whole = 1 ' +
      'AND g.tenant_id = usage_summaries.tenant_id AND g.feature_key = usage_summaries.feature_key ' +
      'AND g.period_start < usage_summaries.period_end AND usage_summaries.period_start < g.period_end)',
  );
  const features = run.features.filter((f) => keys.has(f.key));
  if (features.some((f) => f.aggregation === 'unique')) await deleteOrphanValues(run, 'aggregate_groups');
  await insertGroupsByIndex(run.db, 'whole-groups', features, run.upTo, run.now);
  return countWritten(run.db, 'aggregate_groups');
}
