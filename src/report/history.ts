import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';
import { loadTenantTerms } from '../rate/tenant-terms.js';
import type { Db } from '../storage/db.js';
import { TenantTimeline, type Window } from '../aggregate/windows.js';
import { rateWindows } from '../rate/window.js';
import { toTenantReports, type TenantReport } from './report.js';

/**
 * A tenant's last `limit` periods, newest first, each rated like `billing report`. History
 * starts at the tenant's first sign of life: creation, first subscription or first event.
 */
export async function buildHistory(db: Db, opts: { now: Instant; tenantId: string; limit?: number }): Promise<TenantReport[]> {
  const limit = opts.limit ?? 12;
  if (!Number.isInteger(limit) || limit < 1) throw new BillingError('usage', `--limit must be a whole number >= 1 (got ${opts.limit})`);
  const q = db.knex;
  const terms = await loadTenantTerms(q, [opts.tenantId]);
  const t = terms.get(opts.tenantId)!;
  if (!t.tenant) throw new BillingError('not_found', `tenant "${opts.tenantId}" does not exist (see \`billing tenant list\`)`);
  const first = await q('usage_events').where({ tenant_id: opts.tenantId }).min({ t: 'occurred_at' }).first();
  const origin = Math.min(
    t.tenant.createdAt,
    ...t.subscriptions.map((s) => s.startedAt),
    first?.t === null || first?.t === undefined ? Infinity : Number(first.t),
  );
  const timeline = new TenantTimeline(t.subscriptions);
  const windows: Window[] = [];
  for (let w = timeline.windowAt(opts.now); windows.length < limit; w = timeline.windowAt(w.start - 1)) {
    windows.push(w);
    if (w.start <= origin) break;
  }
  return toTenantReports(db, terms, await rateWindows(db, terms, new Map([[opts.tenantId, windows]]), opts.now));
}
