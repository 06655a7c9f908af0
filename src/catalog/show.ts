import type { Feature, PlanVersion } from '../domain/catalog.js';
import { BillingError } from '../domain/errors.js';
import type { Db } from '../storage/db.js';
import { listPlanKeys, loadCurrentPlanVersion, loadFeatures, loadPlanVersion } from './repository.js';

export interface CatalogView {
  features: Feature[];
  /** Current versions, or the one version asked for. */
  plans: PlanVersion[];
}

/** The stored catalog: every feature and each plan's current version (or one plan/version). */
export async function showCatalog(db: Db, opts: { planKey?: string; version?: number } = {}): Promise<CatalogView> {
  const q = db.knex;
  const features = [...(await loadFeatures(q)).values()];
  if (opts.planKey === undefined) {
    if (opts.version !== undefined) throw new BillingError('usage', '--version needs --plan KEY');
    const plans: PlanVersion[] = [];
    for (const key of await listPlanKeys(q)) {
      const v = await loadCurrentPlanVersion(q, key);
      if (v) plans.push(v);
    }
    return { features, plans };
  }
  const plan =
    opts.version === undefined ? await loadCurrentPlanVersion(q, opts.planKey) : await loadPlanVersion(q, opts.planKey, opts.version);
  if (!plan) {
    const what = opts.version === undefined ? `plan "${opts.planKey}"` : `plan "${opts.planKey}" version ${opts.version}`;
    throw new BillingError('not_found', `${what} does not exist (see \`billing catalog show\`)`);
  }
  const used = new Set(Object.keys(plan.features));
  return { features: features.filter((f) => used.has(f.key)), plans: [plan] };
}
