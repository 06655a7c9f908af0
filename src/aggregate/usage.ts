import type { Knex } from 'knex';
import type { Feature } from '../domain/catalog.js';
import type { Db } from '../storage/db.js';
import { literalGroupsSource, readUsage, usageSelects, type GroupRow, type UsageRow } from './usage-sql.js';
import type { Window } from './windows.js';

/** Usage by window start, then feature key. */
export type UsageByWindow = Map<number, Map<string, UsageRow>>;

/** Groups per query: keeps the bindings well under SQLite's limit. */
const GROUPS_PER_QUERY = 1000;

/**
 * Tenants' usage of these features in these windows, straight from usage_events (so it
 * includes events the aggregate stage has not summarized yet). Reads the indexed ranges only.
 */
export async function usageByTenant(
  db: Db,
  q: Knex | Knex.Transaction,
  windows: Map<string, Window[]>,
  features: Feature[],
): Promise<Map<string, UsageByWindow>> {
  const out = new Map<string, UsageByWindow>();
  const metered = features.filter((f) => f.type !== 'boolean');
  const groups: GroupRow[] = [];
  for (const [tenantId, ws] of windows) {
    out.set(tenantId, new Map(ws.map((w) => [w.start, new Map()])));
    for (const w of ws) {
      for (const f of metered) {
        groups.push({ tenantId, featureKey: f.key, periodStart: w.start, periodEnd: w.end, subscriptionId: w.subscription?.id ?? null });
      }
    }
  }
  for (let i = 0; i < groups.length; i += GROUPS_PER_QUERY) {
    const rows = await readUsage(db, q, usageSelects(db, literalGroupsSource(groups.slice(i, i + GROUPS_PER_QUERY)), metered));
    for (const r of rows) out.get(r.tenantId)?.get(r.periodStart)?.set(r.featureKey, r);
  }
  return out;
}

/** One tenant's usage (see usageByTenant). */
export async function tenantUsage(
  db: Db,
  q: Knex | Knex.Transaction,
  tenantId: string,
  windows: Window[],
  features: Feature[],
): Promise<UsageByWindow> {
  return (await usageByTenant(db, q, new Map([[tenantId, windows]]), features)).get(tenantId)!;
}
