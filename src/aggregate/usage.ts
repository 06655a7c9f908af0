import type { Knex } from 'knex';
import type { Feature } from '../domain/catalog.js';
import type { Db } from '../storage/db.js';
import { jsonField, preparedRaw } from '../storage/sql.js';
import { QUANTITY_SCALE } from '../domain/quantity.js';
import { summaryPlusNewSql, wholeWindowSql } from './usage-read.js';
import { literalGroupsSource, readUsage, usageSelects, type GroupRow } from './usage-sql.js';
import { billingPeriodOf, usageValue } from './value.js';
import { readState } from './watermark.js';
import type { Window } from './windows.js';
import type { Period } from '../domain/period.js';

/*
 * The usage read model (README "Reading usage"): what a tenant used of a feature in a window,
 * from summaries wherever they can be trusted and from raw events elsewhere. Callers decide
 * what the number means; they never read summaries or events for usage themselves.
 */

/** One group to read: a tenant's window of a feature, and the tenant's windowsKey now. */
export interface UsageGroup {
  tenantId: string;
  feature: Feature;
  window: Window;
  windowsKey: string;
}

/**
 * Per handle: the aggregate watermark it saw last (-1: none), the next read's guess, and the
 * tenant × feature pairs whose summaries could not be trusted at it (re-cut since, new, a hole
 * open, a unique set not filled yet), which read their events directly until such a read
 * finds them trusted or the watermark moves.
 */
const aggregateSeen = new WeakMap<Db, { watermark: number; untrusted: Set<string> }>();
const MAX_UNTRUSTED = 10_000;

type UsedRow = { alongside: unknown; watermark: number | string | null; quantity: string | null; events?: unknown };

/**
 * A group's usage now, in micro-units as text (null: no events), in one statement: the
 * summary plus the events not aggregated yet when it can be trusted, else every event of the
 * window. A second statement when an aggregate run moved the watermark since this handle's
 * last read, or the tenant's summaries are being re-cut. `alongside`: a scalar SQL
 * expression (no bindings) read in the same statement and returned as is, so that a caller
 * can validate its own cache against the same snapshot.
 */
export async function usageOf(db: Db, g: UsageGroup, opts: { alongside?: string } = {}): Promise<{ quantity: string | null; alongside: unknown }> {
  const group = { tenantId: g.tenantId, start: g.window.start, end: g.window.end };
  const along = opts.alongside ?? 'NULL';
  const first = async <T>(sql: { sql: string; bindings: Knex.RawBinding[] }): Promise<T> =>
    (await db.rows<T>(preparedRaw(db, `SELECT ${along} AS alongside, u.* FROM (${sql.sql}) u`, sql.bindings)))[0];
  let state = aggregateSeen.get(db);
  if (!state) {
    // A handle's first read (every `billing check` process): ask for the watermark first,
    // so that even the first answer can come from the summary.
    aggregateSeen.set(db, (state = { watermark: (await readState(db)).watermark ?? -1, untrusted: new Set() }));
  }
  const seen = (row: UsedRow) => {
    const w = row.watermark === null ? -1 : Number(row.watermark);
    if (w !== state.watermark) state.untrusted.clear();
    state.watermark = w;
    return w;
  };
  const groupKey = `${g.tenantId}\u0000${g.feature.key}`;
  // The stored quantity made a value (value.ts); avg needs the window's event count for it.
  const withEvents = g.feature.aggregation === 'avg';
  const value = (row: UsedRow) => usageValue(g.feature.aggregation, row.quantity, Number(row.events ?? 0), billingPeriodOf(g.window));
  let guess = state.untrusted.has(groupKey) ? -1 : state.watermark;
  for (let attempt = 0; guess >= 0 && attempt < 2; attempt++) {
    const row = await first<UsedRow & { ok: number | string }>(
      summaryPlusNewSql(db, g.feature, group, { windowsKey: g.windowsKey, watermark: guess }, withEvents),
    );
    if (Number(row.ok) === 1) return { quantity: value(row), alongside: row.alongside };
    const now = seen(row);
    if (now === guess) {
      // The watermark held, so something else is untrusted: read the events from now on.
      if (state.untrusted.size >= MAX_UNTRUSTED) state.untrusted.clear();
      state.untrusted.add(groupKey);
      break;
    }
    guess = now;
  }
  const row = await first<UsedRow & { trusted: number | string }>(
    wholeWindowSql(db, g.feature, group, state.watermark < 0 ? null : g.windowsKey, withEvents),
  );
  seen(row);
  if (Number(row.trusted) === 1) state.untrusted.delete(groupKey);
  return { quantity: value(row), alongside: row.alongside };
}

/** Micro-units used (text), by window start, then feature key; a feature without events is absent. */
export type UsageByWindow = Map<number, Map<string, string>>;

/** Groups per query: keeps the bindings well under SQLite's limit. */
const GROUPS_PER_QUERY = 1000;

/**
 * A statement per group costs far more than reading one event (figures from the aggregate
 * bench in docs/performance-results.md): below this many summarized events per group, one
 * read of every event of the tenant's windows is cheaper.
 */
const FAST_MIN_EVENTS_PER_GROUP = 500;

const metered = (features: Feature[]) => features.filter((f) => f.type !== 'boolean');

/** A tenant's groups: each window × metered feature. */
function groupsOf(tenantId: string, windows: Window[], features: Feature[]): GroupRow[] {
  return windows.flatMap((w) =>
    metered(features).map((f) => ({
      tenantId,
      featureKey: f.key,
      periodStart: w.start,
      periodEnd: w.end,
      subscriptionId: w.subscription?.id ?? null,
      billingPeriod: billingPeriodOf(w),
    })),
  );
}

/**
 * Tenants' usage of these features in these windows, straight from usage_events (so it
 * includes events the aggregate stage has not summarized yet). Reads the indexed ranges only.
 */
export async function usageByTenant(
  db: Db,
  windows: Map<string, Window[]>,
  features: Feature[],
): Promise<Map<string, UsageByWindow>> {
  const out = new Map<string, UsageByWindow>();
  for (const [tenantId, ws] of windows) out.set(tenantId, new Map(ws.map((w) => [w.start, new Map()])));
  await readGroups(db, [...windows].flatMap(([tenantId, ws]) => groupsOf(tenantId, ws, features)), features, out);
  return out;
}

/**
 * A unique-count feature reads in a select of its own, and each select carries the groups it
 * is given: so a statement holds the groups of the additive and last features, or of one
 * unique feature, and never a copy of every group per unique feature (which would run past
 * the databases' bind limits on a catalog with many of them).
 */
async function readGroups(db: Db, groups: GroupRow[], features: Feature[], out: Map<string, UsageByWindow>): Promise<void> {
  const fs = metered(features);
  const byKey = new Map(fs.map((f) => [f.key, f]));
  const byGroup = new Map(groups.map((g) => [`${g.tenantId}\u0000${g.featureKey}\u0000${g.periodStart}`, g]));
  const batches = [fs.filter((f) => f.aggregation !== 'unique'), ...fs.filter((f) => f.aggregation === 'unique').map((f) => [f])];
  for (const batch of batches) {
    const keys = new Set(batch.map((f) => f.key));
    const mine = groups.filter((g) => keys.has(g.featureKey));
    for (let i = 0; i < mine.length; i += GROUPS_PER_QUERY) {
      const rows = await readUsage(db, usageSelects(db, literalGroupsSource(mine.slice(i, i + GROUPS_PER_QUERY)), batch));
      for (const r of rows) {
        const g = byGroup.get(`${r.tenantId}\u0000${r.featureKey}\u0000${r.periodStart}`)!;
        const v = usageValue(byKey.get(r.featureKey)!.aggregation, r.quantity, r.eventCount, g.billingPeriod!);
        out.get(r.tenantId)?.get(r.periodStart)?.set(r.featureKey, v!);
      }
    }
  }
}

/**
 * Tenants' usage of whole windows, as usageByTenant. A tenant with many events (more than
 * FAST_MIN_EVENTS_PER_GROUP summarized a window × feature) is read from its summaries
 * (tenantUsage); the others in one read of every event of their windows. `windowsKeys`: each
 * tenant's windowsKey now.
 */
export async function wholeWindowsUsage(
  db: Db,
  all: Map<string, Window[]>,
  features: Feature[],
  windowsKeys: Map<string, string>,
): Promise<Map<string, UsageByWindow>> {
  const { purged, windows } = await splitPurged(db, all);
  const out = await liveWindowsUsage(db, windows, features, windowsKeys);
  if (purged.size === 0) return out;
  const { watermark } = await readState(db);
  for (const [id, ws] of purged) {
    const usage = await fromSummaries(db, id, ws, features, windowsKeys.get(id) ?? '', watermark, true);
    const into = out.get(id) ?? new Map();
    for (const [start, m] of usage) into.set(start, m);
    out.set(id, into);
  }
  return out;
}

/**
 * Windows whose raw events retention deleted (they ended at or before the tenant's
 * retention horizon) apart from the others: their summaries are all that is left of them.
 */
async function splitPurged(
  db: Db,
  windows: Map<string, Window[]>,
): Promise<{ purged: Map<string, Window[]>; windows: Map<string, Window[]> }> {
  const horizons = new Map<string, number>();
  const ids = [...windows.keys()];
  for (let i = 0; i < ids.length; i += 500) {
    const rows = await db.knex('retention_horizons').whereIn('tenant_id', ids.slice(i, i + 500)).select('tenant_id', 'purged_before');
    for (const r of rows) horizons.set(String(r.tenant_id), Number(r.purged_before));
  }
  if (horizons.size === 0) return { purged: new Map(), windows };
  const purged = new Map<string, Window[]>();
  const rest = new Map<string, Window[]>();
  for (const [id, ws] of windows) {
    const h = horizons.get(id);
    const gone = h === undefined ? [] : ws.filter((w) => w.end <= h);
    if (gone.length > 0) purged.set(id, gone);
    rest.set(id, gone.length > 0 ? ws.filter((w) => w.end > h!) : ws);
  }
  return { purged, windows: rest };
}

async function liveWindowsUsage(
  db: Db,
  windows: Map<string, Window[]>,
  features: Feature[],
  windowsKeys: Map<string, string>,
): Promise<Map<string, UsageByWindow>> {
  const sizes = await summarizedEvents(db, windows);
  const perWindow = metered(features).length;
  const big = new Set([...windows].filter(([id, ws]) => (sizes.get(id) ?? 0) >= FAST_MIN_EVENTS_PER_GROUP * ws.length * perWindow).map(([id]) => id));
  const out = await usageByTenant(db, new Map([...windows].filter(([id]) => !big.has(id))), features);
  if (big.size === 0) return out;
  const { watermark } = await readState(db);
  for (const id of big) out.set(id, await fromSummaries(db, id, windows.get(id)!, features, windowsKeys.get(id) ?? '', watermark));
  return out;
}

/**
 * One tenant's usage, as usageByTenant, read per window and feature from its summary plus the
 * events not aggregated yet wherever that is exact (usage-read.ts: the tenant
 * cut by `windowsKey`, its subscriptions now; no hole; the watermark unmoved), and from the
 * window's events elsewhere: a statement per group, which costs its new events, not its months.
 */
export async function tenantUsage(
  db: Db,
  tenantId: string,
  windows: Window[],
  features: Feature[],
  windowsKey: string,
): Promise<UsageByWindow> {
  return fromSummaries(db, tenantId, windows, features, windowsKey, (await readState(db)).watermark);
}

/**
 * `purged`: the windows' events before the watermark are gone (retention), so each is its
 * summary plus its events not aggregated yet even where reading every event would be exact.
 */
async function fromSummaries(
  db: Db,
  tenantId: string,
  windows: Window[],
  features: Feature[],
  windowsKey: string,
  watermark: number | null,
  purged = false,
): Promise<UsageByWindow> {
  const usage: UsageByWindow = new Map(windows.map((w) => [w.start, new Map()]));
  const groups = groupsOf(tenantId, windows, features);
  const into = new Map([[tenantId, usage]]);
  if (watermark === null) {
    // Nothing aggregated yet: every group reads its events.
    await readGroups(db, groups, features, into);
    return usage;
  }
  const byKey = new Map(features.map((f) => [f.key, f]));
  const rest: GroupRow[] = [];
  for (const g of groups) {
    let row: { ok: unknown; watermark: unknown; quantity: string | null; events: unknown };
    let trust = watermark;
    for (let attempt = 0; ; attempt++) {
      const fast = summaryPlusNewSql(db, byKey.get(g.featureKey)!, { tenantId, start: g.periodStart, end: g.periodEnd }, { windowsKey, watermark: trust }, true);
      // Prepared on PostgreSQL: a feature's windows share the statement.
      [row] = await db.rows<typeof row>(preparedRaw(db, fast.sql, fast.bindings));
      // An aggregate run committed in between: ask again at its watermark (not counting its events twice).
      if (!purged || row.watermark === null || Number(row.watermark) === trust || attempt === 3) break;
      trust = Number(row.watermark);
    }
    if (Number(row.ok) !== 1 && !purged) rest.push(g);
    else if (Number(row.events) > 0) {
      const v = usageValue(byKey.get(g.featureKey)!.aggregation, String(row.quantity), Number(row.events), g.billingPeriod!);
      usage.get(g.periodStart)!.set(g.featureKey, v!);
    }
  }
  await readGroups(db, rest, features, into);
  return usage;
}

/**
 * The events the tenants' summaries hold around these windows (what reading every event would
 * cost): summaries starting between the earliest window start and the latest end, a cost
 * estimate only.
 */
async function summarizedEvents(db: Db, windows: Map<string, Window[]>): Promise<Map<string, number>> {
  const all = [...windows.values()].flat();
  const out = new Map<string, number>();
  if (all.length === 0) return out;
  const [from, to] = [Math.min(...all.map((w) => w.start)), Math.max(...all.map((w) => w.end))];
  const ids = [...windows.keys()];
  for (let i = 0; i < ids.length; i += 500) {
    const q = db.knex;
    const rs = await q('usage_summaries')
      .whereIn('tenant_id', ids.slice(i, i + 500))
      .where('period_start', '>=', from)
      .where('period_start', '<', to)
      .groupBy('tenant_id')
      .select<Array<{ tenant_id: string; n: unknown }>>('tenant_id', q.raw('SUM(event_count) AS n'));
    for (const r of rs) out.set(String(r.tenant_id), Number(r.n ?? 0));
  }
  return out;
}

/** One feature's reset windows (DESIGN.md §14 `resetEvery`) of a tenant's billing period. */
export interface ResetWindowsRequest {
  tenantId: string;
  feature: Feature;
  /** The period's windows, in time order (rate/reset.ts). */
  windows: Period[];
  subscriptionId: string | null;
}

/**
 * Usage per reset window, in micro-units as text ('0': no events), one array per request in
 * its windows' order: the one reader of windowed usage. Read from the windows' events, each
 * window a group of the indexed range (tenant_id, feature_key, occurred_at) and grouped by it;
 * summaries stay per billing period and are not involved.
 */
export async function resetWindowsUsage(db: Db, requests: ResetWindowsRequest[]): Promise<string[][]> {
  const out = new Map<string, UsageByWindow>();
  const groups: GroupRow[] = [];
  const features = new Map<string, Feature>();
  for (const r of requests) {
    features.set(r.feature.key, r.feature);
    const byStart = out.get(r.tenantId) ?? new Map<number, Map<string, string>>();
    out.set(r.tenantId, byStart);
    for (const w of r.windows) {
      if (!byStart.has(w.start)) byStart.set(w.start, new Map());
      // Each window its own period (weighted_sum is refused with reset windows; avg needs none).
      groups.push({ tenantId: r.tenantId, featureKey: r.feature.key, periodStart: w.start, periodEnd: w.end, subscriptionId: r.subscriptionId, billingPeriod: w });
    }
  }
  await readGroups(db, groups, [...features.values()], out);
  return requests.map((r) => r.windows.map((w) => out.get(r.tenantId)?.get(w.start)?.get(r.feature.key) ?? '0'));
}

/** Windows (or any half-open ranges) read per range of the events index. */
export interface EventRange {
  start: number;
  end: number;
}

/**
 * The one reader of a window's event amounts, for pricing per event (percentage): a tenant's
 * events of a feature in [start, end), in time order (occurred_at, then ingest seq), as exact
 * micro-unit text. One range of the (tenant_id, feature_key, occurred_at) index per window;
 * the summary of the window is unaffected (it is still the summed amount).
 */
export async function eventAmounts(q: Knex | Knex.Transaction, tenantId: string, featureKey: string, window: EventRange): Promise<string[]> {
  const rows = await q('usage_events')
    .where({ tenant_id: tenantId, feature_key: featureKey })
    .where('occurred_at', '>=', window.start)
    .where('occurred_at', '<', window.end)
    .orderBy([{ column: 'occurred_at' }, { column: 'seq' }])
    .select(q.raw('CAST(quantity AS TEXT) AS quantity'));
  return rows.map((r: { quantity: string }) => String(r.quantity));
}

/**
 * The one reader of usage by dimension value (DESIGN.md §14 prices by dimension): a tenant's
 * usage of a feature in [start, end) per value of the metadata field `dimension`, micro-units
 * as text; events without the field count under '*'. One range of the (tenant_id,
 * feature_key, occurred_at) index grouped by the value; summaries stay per feature (their
 * total is the values' sum). Only sum and count features are priced by dimension.
 */
export async function dimensionUsage(
  db: Db,
  tenantId: string,
  feature: Feature,
  dimension: string,
  window: EventRange,
  q: Knex | Knex.Transaction = db.knex,
): Promise<Map<string, string>> {
  const value = jsonField(db, 'metadata', dimension);
  const quantity = feature.aggregation === 'count' ? `COUNT(*) * ${10 ** QUANTITY_SCALE}` : 'SUM(quantity)';
  const rows = await q('usage_events')
    .where({ tenant_id: tenantId, feature_key: feature.key })
    .where('occurred_at', '>=', window.start)
    .where('occurred_at', '<', window.end)
    // By position: PostgreSQL would not match the field's bound name in two places.
    .groupByRaw('1')
    .select(q.raw('? AS value', [value]), q.raw(`CAST(${quantity} AS TEXT) AS quantity`));
  const out = new Map<string, string>();
  for (const r of rows as Array<{ value: unknown; quantity: string }>) {
    const v = r.value === null || r.value === undefined || r.value === '' ? '*' : String(r.value);
    out.set(v, (BigInt(out.get(v) ?? '0') + BigInt(r.quantity)).toString());
  }
  return out;
}
