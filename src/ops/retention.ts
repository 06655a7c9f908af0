import type { Knex } from 'knex';
import type { Db } from '../storage/db.js';
import { BillingError } from '../domain/errors.js';
import { addMonthsClamped, toIso } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import { readState } from '../aggregate/watermark.js';
import { loadFeatures } from '../catalog/repository.js';
import type { Feature } from '../domain/catalog.js';
import { uniqueValue } from '../aggregate/usage-sql.js';

/**
 * `billing retention --older-than 7y`: delete raw usage events past retention, but only
 * those whose usage is safe without them (DESIGN.md §11). An event qualifies when it is
 * - aggregated: at or below the aggregate watermark and not in one of its holes;
 * - summarized: a usage summary covers its tenant, feature and period;
 * - invoiced (once the invoices table exists): a non-void invoice covers the period it
 *   occurred in, and some non-void invoice of the tenant was issued after it was ingested
 *   (generation aggregates first and bills late usage, so its usage reached an invoice).
 * And only whole periods go, oldest first: a period whose summary ended before the cutoff
 * and before the tenant's oldest event that does not qualify. A summary is never left
 * describing events of which only some remain, and what remains is a suffix of the
 * tenant's history (what the aggregate stage's rebuilds start from).
 * Summaries, invoices and the audit log are never deleted: financial records are kept.
 * Each tenant's horizon is recorded (retention_horizons): its periods that ended by then
 * are read from their summaries by reports (aggregate/usage.ts), not recounted from events.
 */

export interface RetentionGroup {
  tenantId: string;
  featureKey: string;
  events: number;
  oldest: string;
  newest: string;
}

export interface RetentionResult {
  cutoff: string;
  dryRun: boolean;
  deleted: number;
  groups: RetentionGroup[];
}

const BATCH = 5000;

/** "7y", "18m", "90d" → the instant that far before now. */
export function retentionCutoff(spec: string, now: number): number {
  const m = /^(\d+)\s*([ymd])$/i.exec(spec.trim());
  if (!m || Number(m[1]) <= 0) {
    throw new BillingError('usage', `--older-than "${spec}" must be a positive age like 7y, 18m or 90d`);
  }
  const n = Number(m[1]);
  const unit = m[2].toLowerCase();
  if (unit === 'd') return now - n * 86_400_000;
  return addMonthsClamped(now, -(unit === 'y' ? 12 * n : n));
}

interface Rules {
  watermark: number;
  holes: Array<{ from: number; to: number }>;
  invoices: boolean;
}

async function rules(db: Db): Promise<Rules | null> {
  // Everything through the handle: on SQLite a transaction holds the only connection.
  const q = db.knex;
  const state = await readState(db);
  if (state.watermark === null) return null; // nothing aggregated yet: nothing qualifies
  return { watermark: state.watermark, holes: state.holes, invoices: await q.schema.hasTable('invoices') };
}

/** The conditions an event (alias `e`) must meet, the summary's period end bounded by `periodEndBy`. */
function qualifies(q: Knex, w: Knex.QueryBuilder, r: Rules, periodEndBy: number): void {
  w.where('e.seq', '<=', r.watermark);
  for (const h of r.holes) w.whereNot((x) => x.whereBetween('e.seq', [h.from, h.to]));
  w.whereExists((s) =>
    s
      .select(q.raw('1'))
      .from('usage_summaries as s')
      .whereRaw('s.tenant_id = e.tenant_id and s.feature_key = e.feature_key')
      .whereRaw('s.period_start <= e.occurred_at and e.occurred_at < s.period_end')
      .where('s.period_end', '<=', periodEndBy),
  );
  if (!r.invoices) return;
  w.whereExists((s) =>
    s
      .select(q.raw('1'))
      .from('invoices as i')
      .whereRaw('i.tenant_id = e.tenant_id')
      .whereNot('i.status', 'void')
      .whereRaw('i.period_start <= e.occurred_at and e.occurred_at < i.period_end'),
  );
  w.whereExists((s) =>
    s
      .select(q.raw('1'))
      .from('invoices as i2')
      .whereRaw('i2.tenant_id = e.tenant_id')
      .whereNot('i2.status', 'void')
      .whereRaw('i2.issued_at >= e.ingested_at'),
  );
}

/** Per tenant: how far back its history may go (the cutoff, or its oldest event that does not qualify). */
async function horizons(db: Db, r: Rules, cutoff: number): Promise<Map<string, number>> {
  const q = db.knex;
  const out = new Map<string, number>();
  const candidates = await q('usage_events as e')
    .where('e.occurred_at', '<', cutoff)
    .modify((b) => qualifies(q, b, r, cutoff))
    .distinct('e.tenant_id');
  for (const { tenant_id } of candidates) out.set(String(tenant_id), cutoff);
  if (out.size === 0) return out;
  const blocked = await q('usage_events as e')
    .where('e.occurred_at', '<', cutoff)
    .whereNot((w) => qualifies(q, w, r, cutoff))
    .select('e.tenant_id')
    .min('e.occurred_at as first')
    .groupBy('e.tenant_id');
  for (const b of blocked) {
    const t = String(b.tenant_id);
    if (out.has(t)) out.set(t, Math.min(cutoff, Number(b.first)));
  }
  return out;
}

/** The events of one tenant that may go now (as a query; a builder is a thenable, so wrapped). */
function deletable(db: Db, r: Rules, tenantId: string, horizon: number): { query: Knex.QueryBuilder } {
  const q = db.knex;
  return {
    query: q('usage_events as e')
      .where('e.tenant_id', tenantId)
      .where('e.occurred_at', '<', horizon)
      .modify((b) => qualifies(q, b, r, horizon)),
  };
}

/**
 * A unique count merges late values into its period's value set, which must be whole.
 * PostgreSQL's full rebuild leaves sets to be filled from the events on first merge
 * (aggregate/README.md); events about to go fill their periods' missing sets first.
 */
async function fillValueSets(db: Db, r: Rules, tenantId: string, horizon: number, uniques: Feature[]): Promise<void> {
  const trx = db.knex;
  for (const f of uniques) {
    const value = uniqueValue(db, f);
    const { sql, bindings } = deletable(db, r, tenantId, horizon)
      .query.join('usage_summaries as s', (j) =>
        j.on('s.tenant_id', 'e.tenant_id').andOn('s.feature_key', 'e.feature_key').andOn('s.period_start', '<=', 'e.occurred_at').andOn('e.occurred_at', '<', 's.period_end'),
      )
      .where('e.feature_key', f.key)
      .whereRaw('? IS NOT NULL', [value])
      .whereNotExists((x) =>
        x.select(trx.raw('1')).from('usage_unique_values as u').whereRaw('u.tenant_id = s.tenant_id and u.feature_key = s.feature_key and u.period_start = s.period_start'),
      )
      .distinct('s.tenant_id', 's.feature_key', 's.period_start', trx.raw('? as value', [value]))
      .toSQL();
    await trx.raw(`INSERT INTO usage_unique_values (tenant_id, feature_key, period_start, value) ${sql} ON CONFLICT DO NOTHING`, [...bindings]);
  }
}

export async function runRetention(
  db: Db,
  opts: { olderThan: string; now: number; actor: string; dryRun?: boolean },
): Promise<RetentionResult> {
  const cutoff = retentionCutoff(opts.olderThan, opts.now);
  const result: RetentionResult = { cutoff: toIso(cutoff), dryRun: Boolean(opts.dryRun), deleted: 0, groups: [] };
  const r = await rules(db);
  if (!r) return result;
  const bounds = await horizons(db, r, cutoff);
  for (const [tenantId, horizon] of [...bounds].sort(([a], [b]) => a.localeCompare(b))) {
    const rows = await deletable(db, r, tenantId, horizon)
      .query.select('e.feature_key')
      .count('* as n')
      .min('e.occurred_at as oldest')
      .max('e.occurred_at as newest')
      .groupBy('e.feature_key')
      .orderBy('e.feature_key');
    for (const g of rows as Array<Record<string, unknown>>) {
      result.groups.push({
        tenantId,
        featureKey: String(g.feature_key),
        events: Number(g.n),
        oldest: toIso(Number(g.oldest)),
        newest: toIso(Number(g.newest)),
      });
    }
  }
  if (opts.dryRun || result.groups.length === 0) return result;

  const uniques = [...(await loadFeatures(db.knex)).values()].filter((f) => f.aggregation === 'unique');
  // Small transactions, one tenant at a time: an hourly aggregate run is never blocked long.
  for (const [tenantId, horizon] of bounds) {
    if (uniques.length > 0) await db.tx(async (t) => fillValueSets(t, (await rules(t))!, tenantId, horizon, uniques));
    for (;;) {
      const n = await db.tx(async (t) => {
        const trx = t.knex;
        const rt = (await rules(t))!;
        const seqs = (await deletable(t, rt, tenantId, horizon).query.select('e.seq').orderBy('e.seq').limit(BATCH)).map((x: { seq: unknown }) => Number(x.seq));
        if (seqs.length === 0) return 0;
        for (let i = 0; i < seqs.length; i += 500) await trx('usage_events').whereIn('seq', seqs.slice(i, i + 500)).delete();
        await recordHorizon(trx, tenantId, horizon, opts.now);
        await writeAudit(trx, {
          at: opts.now,
          actor: opts.actor,
          tenantId,
          entity: 'usage_events',
          entityId: tenantId,
          action: 'retention_delete',
          after: { events: seqs.length, olderThan: opts.olderThan, cutoff: toIso(cutoff), before: toIso(horizon) },
        });
        return seqs.length;
      });
      result.deleted += n;
      if (n < BATCH) break;
    }
  }
  return result;
}

/** Only moves forward: periods already purged stay purged. */
async function recordHorizon(trx: Knex, tenantId: string, horizon: number, now: number): Promise<void> {
  const cur = await trx('retention_horizons').where({ tenant_id: tenantId }).first('purged_before');
  if (!cur) await trx('retention_horizons').insert({ tenant_id: tenantId, purged_before: horizon, updated_at: now });
  else if (Number(cur.purged_before) < horizon) {
    await trx('retention_horizons').where({ tenant_id: tenantId }).update({ purged_before: horizon, updated_at: now });
  }
}
