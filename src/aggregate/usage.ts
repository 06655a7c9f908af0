import type { Knex } from 'knex';
import type { Feature } from '../domain/catalog.js';
import type { Db } from '../storage/db.js';
import { literalGroupsSource, readUsage, usageSelects, type UsageRow } from './usage-sql.js';
import type { Window } from './windows.js';

/** Usage by window start, then feature key. */
export type UsageByWindow = Map<number, Map<string, UsageRow>>;

/**
 * One tenant's usage of these features in these windows, straight from usage_events (so it
 * includes events the aggregate stage has not summarized yet). Reads the indexed ranges only.
 */
export async function tenantUsage(
  db: Db,
  q: Knex | Knex.Transaction,
  tenantId: string,
  windows: Window[],
  features: Feature[],
): Promise<UsageByWindow> {
  const out: UsageByWindow = new Map(windows.map((w) => [w.start, new Map()]));
  const metered = features.filter((f) => f.type !== 'boolean');
  if (windows.length === 0 || metered.length === 0) return out;
  const groups = windows.flatMap((w) =>
    metered.map((f) => ({
      tenantId,
      featureKey: f.key,
      periodStart: w.start,
      periodEnd: w.end,
      subscriptionId: w.subscription?.id ?? null,
    })),
  );
  const rows = await readUsage(db, q, usageSelects(db, literalGroupsSource(groups), metered));
  for (const r of rows) out.get(r.periodStart)?.set(r.featureKey, r);
  return out;
}
