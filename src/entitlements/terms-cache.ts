import type { Knex } from 'knex';
import { featureFromRow } from '../catalog/repository.js';
import type { Feature, PlanVersion, QuotaOverride } from '../domain/catalog.js';
import type { Db } from '../storage/db.js';
import { TenantTimeline, windowsKey } from '../aggregate/windows.js';
import { CatalogCache, loadTenantTerms } from '../rate/tenant-terms.js';
import type { Segment, Tenant } from '../subscriptions/repository.js';
import type { UnitGrant } from '../rate/grants.js';

type Q = Knex | Knex.Transaction;

/** A tenant's terms for checks: everything but usage. */
export interface TenantTerms {
  tenant: Tenant;
  timeline: TenantTimeline;
  /** What cut the tenant's windows, as the aggregate stage records it (windows.ts). */
  windowsKey: string;
  /** Segments by subscription id, in order. */
  segments: Map<string, Segment[]>;
  overrides: Map<string, QuotaOverride>;
  /** Grants of units with their recorded draws (rate/grants.ts). */
  grants: UnitGrant[];
}

/** Tenants kept per generation; the least recently loaded go first past this. */
const MAX_TENANTS = 10_000;

/**
 * Terms as of one value of the terms_epoch counter. Loads are memoised as promises, so
 * concurrent checks share one load. A generation used for a single call (`uncached`) is
 * a plain loader.
 */
export class TermsGeneration {
  private readonly tenants = new Map<string, Promise<TenantTerms | null>>();
  private readonly features = new Map<string, Promise<Feature | null>>();
  private readonly catalog = new CatalogCache();

  constructor(readonly epoch: number | null) {}

  tenant(q: Q, id: string): Promise<TenantTerms | null> {
    return this.memo(this.tenants, id, () => loadCheckTerms(q, id), MAX_TENANTS);
  }

  feature(q: Q, key: string): Promise<Feature | null> {
    return this.memo(this.features, key, async () => {
      const r = await q('features').where({ key }).first();
      return r ? featureFromRow(r) : null;
    });
  }

  plan(q: Q, planKey: string, version: number): Promise<PlanVersion | null> {
    return this.catalog.plan(q, planKey, version);
  }

  private memo<T>(map: Map<string, Promise<T>>, key: string, load: () => Promise<T>, max = Infinity): Promise<T> {
    const hit = map.get(key);
    if (hit) return hit;
    const p = load();
    map.set(key, p);
    // A failed load is not remembered: the next call tries again.
    p.catch(() => map.get(key) === p && map.delete(key));
    if (map.size > max) map.delete(map.keys().next().value as string);
    return p;
  }
}

async function loadCheckTerms(q: Q, tenantId: string): Promise<TenantTerms | null> {
  const t = (await loadTenantTerms(q, [tenantId])).get(tenantId);
  if (!t?.tenant) return null;
  const { tenant, subscriptions, segments, overrides, grants } = t;
  return { tenant, timeline: new TenantTimeline(subscriptions), windowsKey: windowsKey(subscriptions), segments, overrides, grants };
}

/** The counter's current value, as this handle (a connection or a transaction) sees it. */
export async function readTermsEpoch(db: Db): Promise<number> {
  const rows = await db.rows<{ epoch: number | string }>('SELECT epoch FROM terms_epoch WHERE id = 1');
  return Number(rows[0].epoch);
}

/** SQL yielding the counter, to ride along in a check's usage query. */
export const TERMS_EPOCH_SQL = '(SELECT epoch FROM terms_epoch WHERE id = 1)';

/**
 * One database handle's cache: the current generation, replaced by a newer one whenever a
 * check reads a different epoch. Entries are only ever trusted after a check has read the
 * epoch again, after loading them, and found it unchanged (see checkEntitlement).
 */
export class TermsCache {
  private gen: TermsGeneration | null = null;
  private opening: Promise<TermsGeneration> | null = null;

  constructor(private readonly db: Db) {}

  async current(): Promise<TermsGeneration> {
    if (this.gen) return this.gen;
    this.opening ??= readTermsEpoch(this.db)
      .then((epoch) => this.advance(epoch))
      .finally(() => (this.opening = null));
    return this.opening;
  }

  /**
   * Moves to a generation for `epoch`. Two checks racing here may swap generations back and
   * forth; that costs reloads, never a wrong answer, since nothing is trusted unverified.
   */
  advance(epoch: number): TermsGeneration {
    if (this.gen?.epoch !== epoch) this.gen = new TermsGeneration(epoch);
    return this.gen;
  }
}

const caches = new WeakMap<Db, TermsCache>();

export function termsCache(db: Db): TermsCache {
  let c = caches.get(db);
  if (!c) caches.set(db, (c = new TermsCache(db)));
  return c;
}
