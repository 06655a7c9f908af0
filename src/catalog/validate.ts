import type { Aggregation, Feature, PlanFeature, PlanVersion, Pricing, Tier } from '../domain/catalog.js';
import { dec } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import { isKnownCurrency } from '../domain/money.js';
import { parseQuantity } from '../domain/quantity.js';

/** One thing wrong with a catalog file, located by its JSON path. */
export interface CatalogProblem {
  path: string;
  message: string;
}

/** A plan as declared in a catalog file: a plan version without its number. */
export type PlanSpec = Omit<PlanVersion, 'version'>;

export interface CatalogSpec {
  features: Feature[];
  plans: PlanSpec[];
}

const FEATURE_KEY = /^[A-Z][A-Z0-9_]{0,63}$/;
const PLAN_KEY = /^(?=.{1,64}$)[a-z0-9]+(-[a-z0-9]+)*$/;
// Prices: plain non-negative decimals, at most 12 decimals, written as strings.
const PRICE = /^\d{1,18}(\.\d{1,12})?$/;
const AGGREGATIONS: Aggregation[] = ['sum', 'count', 'max', 'last', 'unique'];
const MAX_TRIAL_DAYS = 3650;
const METERED_TERMS = ['included', 'hardStop', 'limit', 'overage'];

type Obj = Record<string, unknown>;

/** Collects problems while walking the input; each check returns the normalized value or undefined. */
class Checker {
  readonly problems: CatalogProblem[] = [];

  fail(path: string, message: string): undefined {
    this.problems.push({ path, message });
    return undefined;
  }

  object(v: unknown, path: string, allowed: string[]): Obj | undefined {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return this.fail(path, 'must be an object');
    const o = v as Obj;
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k)) this.fail(join(path, k), `unknown field (expected one of: ${allowed.join(', ')})`);
    }
    return o;
  }

  string(v: unknown, path: string, opts: { required?: boolean; max?: number } = {}): string | undefined {
    if (v === undefined) return opts.required ? this.fail(path, 'is required') : undefined;
    if (typeof v !== 'string' || v.trim() === '') return this.fail(path, 'must be a non-empty string');
    if (v.length > (opts.max ?? 200)) return this.fail(path, `must be at most ${opts.max ?? 200} characters`);
    return v.trim();
  }

  bool(v: unknown, path: string): boolean | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') return this.fail(path, 'must be true or false');
    return v;
  }

  price(v: unknown, path: string): string | undefined {
    if (typeof v === 'number') {
      return this.fail(path, `must be a decimal string like "${v}" (prices are strings so no float ever touches money)`);
    }
    if (typeof v !== 'string') return this.fail(path, 'must be a decimal string like "0.05"');
    const s = v.trim();
    if (/^-/.test(s)) return this.fail(path, 'must not be negative');
    if (!PRICE.test(s)) return this.fail(path, `"${v}" is not a decimal string with at most 12 decimals, like "0.05"`);
    return s;
  }

  /** A quantity bound (included, limit, upTo, size): number or decimal string, canonicalized. */
  quantity(v: unknown, path: string): string | undefined {
    const q = parseQuantity(v);
    if (q.ok) return q.value;
    const why: Record<typeof q.error, string> = {
      not_a_number: 'must be a number or a decimal string',
      negative: 'must not be negative',
      too_large: 'must be at most 1e12',
      too_precise: 'must have at most 6 decimals',
    };
    return this.fail(path, why[q.error]);
  }
}

function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  const seg = /^[A-Za-z0-9_-]+$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
  return path === '' ? seg.replace(/^\./, '') : path + seg;
}

function checkFeature(c: Checker, v: unknown, path: string, known: Map<string, Feature>): Feature | undefined {
  const o = c.object(v, path, ['key', 'name', 'unit', 'type', 'aggregation', 'uniqueBy', 'stripeMeter']);
  if (!o) return undefined;
  const key = c.string(o.key, join(path, 'key'), { required: true, max: 64 });
  if (key !== undefined && !FEATURE_KEY.test(key)) {
    c.fail(join(path, 'key'), `"${key}" must be UPPER_SNAKE (A-Z, 0-9, _; starting with a letter)`);
  }
  let type: Feature['type'] = 'metered';
  if (o.type !== undefined && o.type !== 'metered' && o.type !== 'boolean') {
    c.fail(join(path, 'type'), 'must be "metered" or "boolean"');
  } else if (o.type === 'boolean') type = 'boolean';
  const name = o.name === undefined ? key : c.string(o.name, join(path, 'name'));
  const unit = o.unit === undefined || o.unit === null ? null : c.string(o.unit, join(path, 'unit'), { max: 64 });
  const stripeMeter =
    o.stripeMeter === undefined || o.stripeMeter === null ? null : c.string(o.stripeMeter, join(path, 'stripeMeter'), { max: 100 });

  let aggregation: Aggregation = 'sum';
  let uniqueBy: string | null = null;
  if (type === 'boolean') {
    for (const k of ['aggregation', 'uniqueBy', 'stripeMeter', 'unit'] as const) {
      if (o[k] !== undefined) c.fail(join(path, k), 'a boolean feature is on or off per plan: it takes no ' + k);
    }
  } else {
    if (o.aggregation !== undefined) {
      if (!AGGREGATIONS.includes(o.aggregation as Aggregation)) {
        c.fail(join(path, 'aggregation'), `must be one of ${AGGREGATIONS.join(', ')}`);
      } else aggregation = o.aggregation as Aggregation;
    }
    if (aggregation === 'unique') {
      if (o.uniqueBy === undefined) c.fail(join(path, 'uniqueBy'), 'is required when aggregation is "unique" (e.g. "user_id")');
      else uniqueBy = c.string(o.uniqueBy, join(path, 'uniqueBy'), { max: 64 }) ?? null;
    } else if (o.uniqueBy !== undefined) {
      c.fail(join(path, 'uniqueBy'), 'only applies to aggregation "unique"');
    }
  }
  if (key === undefined) return undefined;
  const existing = known.get(key);
  if (existing && existing.type !== type) {
    c.fail(
      join(path, 'type'),
      `${key} is already a ${existing.type} feature; its type cannot change (plans and events depend on it; use a new key)`,
    );
  }
  return { key, name: name ?? key, unit: unit ?? null, type, aggregation, uniqueBy, stripeMeter: stripeMeter ?? null };
}

function checkTiers(c: Checker, v: unknown, path: string): Tier[] | undefined {
  if (!Array.isArray(v) || v.length === 0) return c.fail(path, 'must be a non-empty array of {upTo, unitPrice, flatPrice?}');
  const tiers: Tier[] = [];
  let prev: string | null = null;
  v.forEach((t, i) => {
    const tp = join(path, i);
    const o = c.object(t, tp, ['upTo', 'unitPrice', 'flatPrice']);
    if (!o) return;
    const last = i === v.length - 1;
    let upTo: string | null = null;
    if (o.upTo === null || o.upTo === undefined) {
      if (!last) c.fail(join(tp, 'upTo'), 'only the last tier may be open-ended (upTo: null)');
    } else if (last) {
      c.fail(join(tp, 'upTo'), 'the last tier must have upTo: null (it prices everything above the previous bound)');
    } else {
      upTo = c.quantity(o.upTo, join(tp, 'upTo')) ?? null;
      if (upTo !== null && dec(upTo).lte(0)) c.fail(join(tp, 'upTo'), 'must be greater than 0');
      else if (upTo !== null && prev !== null && dec(upTo).lte(dec(prev))) c.fail(join(tp, 'upTo'), `must be greater than ${prev}`);
      if (upTo !== null) prev = upTo;
    }
    const unitPrice = c.price(o.unitPrice, join(tp, 'unitPrice'));
    const flatPrice = o.flatPrice === undefined || o.flatPrice === null ? null : (c.price(o.flatPrice, join(tp, 'flatPrice')) ?? null);
    if (unitPrice !== undefined) tiers.push({ upTo, unitPrice, flatPrice });
  });
  return tiers.length === v.length ? tiers : undefined;
}

function checkPricing(c: Checker, v: unknown, path: string): Pricing | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return c.fail(path, 'must be an object with a "model"');
  const model = (v as Obj).model;
  const common = ['model', 'minimum', 'maximum'];
  let p: Pricing | undefined;
  switch (model) {
    case 'per_unit': {
      const o = c.object(v, path, [...common, 'unitPrice'])!;
      const unitPrice = c.price(o.unitPrice, join(path, 'unitPrice'));
      if (unitPrice !== undefined) p = { model, unitPrice };
      break;
    }
    case 'package': {
      const o = c.object(v, path, [...common, 'size', 'packagePrice'])!;
      const size = o.size === undefined ? c.fail(join(path, 'size'), 'is required') : c.quantity(o.size, join(path, 'size'));
      if (size !== undefined && dec(size).lte(0)) c.fail(join(path, 'size'), 'must be greater than 0');
      const packagePrice = c.price(o.packagePrice, join(path, 'packagePrice'));
      if (size !== undefined && packagePrice !== undefined) p = { model, size, packagePrice };
      break;
    }
    case 'graduated':
    case 'volume': {
      const o = c.object(v, path, [...common, 'tiers'])!;
      const tiers = checkTiers(c, o.tiers, join(path, 'tiers'));
      if (tiers) p = { model, tiers };
      break;
    }
    default:
      return c.fail(join(path, 'model'), 'must be one of per_unit, package, graduated, volume');
  }
  const o = v as Obj;
  const minimum = o.minimum === undefined || o.minimum === null ? null : c.price(o.minimum, join(path, 'minimum'));
  const maximum = o.maximum === undefined || o.maximum === null ? null : c.price(o.maximum, join(path, 'maximum'));
  if (minimum && maximum && dec(maximum).lt(dec(minimum))) c.fail(join(path, 'maximum'), `must be at least the minimum (${minimum})`);
  if (!p || minimum === undefined || maximum === undefined) return undefined;
  // Only written when given, so stored terms stay as small as the file.
  if (minimum !== null) p.minimum = minimum;
  if (maximum !== null) p.maximum = maximum;
  return p;
}

function checkPlanFeature(c: Checker, v: unknown, path: string, key: string, feature: Feature): PlanFeature | undefined {
  if (feature.type === 'boolean') {
    const o = c.object(v, path, ['enabled', ...METERED_TERMS]);
    if (!o) return undefined;
    for (const k of METERED_TERMS) {
      if (k in o) c.fail(join(path, k), `${key} is a boolean feature: it takes only "enabled"`);
    }
    const enabled = c.bool(o.enabled, join(path, 'enabled')) ?? true;
    return { featureKey: key, enabled, included: null, hardStop: false, limit: null, overage: null };
  }
  const o = c.object(v, path, ['enabled', ...METERED_TERMS]);
  if (!o) return undefined;
  const enabled = c.bool(o.enabled, join(path, 'enabled')) ?? true;
  let included: string | null | undefined;
  if ('included' in o) included = o.included === null ? null : c.quantity(o.included, join(path, 'included'));
  else if (o.enabled === false) included = '0'; // listed as off: nothing to include
  else included = c.fail(join(path, 'included'), 'is required for a metered feature (a number, a decimal string, or null for unlimited)');
  const hardStop = c.bool(o.hardStop, join(path, 'hardStop')) ?? false;
  let limit: string | null | undefined = o.limit === undefined || o.limit === null ? null : c.quantity(o.limit, join(path, 'limit'));
  if (limit === null && hardStop) {
    if (included === null) c.fail(join(path, 'hardStop'), 'needs a limit: included is unlimited (null) and no limit is given');
    limit = included;
  }
  if (typeof limit === 'string' && typeof included === 'string' && dec(limit).lt(dec(included))) {
    c.fail(join(path, 'limit'), `must be at least included (${included})`);
  }
  let overage: Pricing | null | undefined = null;
  if (o.overage !== undefined && o.overage !== null) {
    overage = checkPricing(c, o.overage, join(path, 'overage'));
    if (included === null) c.fail(join(path, 'overage'), 'has no effect when included is null (unlimited); remove it or set included');
  }
  if (included === undefined || limit === undefined || overage === undefined) return undefined;
  return { featureKey: key, enabled, included, hardStop, limit, overage };
}

function checkPlan(c: Checker, v: unknown, path: string, features: Map<string, Feature>): PlanSpec | undefined {
  const o = c.object(v, path, ['key', 'name', 'currency', 'price', 'interval', 'trialDays', 'features']);
  if (!o) return undefined;
  const key = c.string(o.key, join(path, 'key'), { required: true, max: 64 });
  if (key !== undefined && !PLAN_KEY.test(key)) c.fail(join(path, 'key'), `"${key}" must be lower-kebab (a-z, 0-9, single dashes)`);
  const name = o.name === undefined ? key : c.string(o.name, join(path, 'name'));
  let currency = c.string(o.currency, join(path, 'currency'), { required: true, max: 3 })?.toUpperCase();
  if (currency !== undefined && !isKnownCurrency(currency)) currency = c.fail(join(path, 'currency'), `"${o.currency}" is not an ISO 4217 currency code`);
  const price = o.price === undefined ? c.fail(join(path, 'price'), 'is required (base fee per interval, e.g. "29.00")') : c.price(o.price, join(path, 'price'));
  let interval: 'month' | 'year' | undefined;
  if (o.interval === 'month' || o.interval === 'year') interval = o.interval;
  else c.fail(join(path, 'interval'), o.interval === undefined ? 'is required ("month" or "year")' : 'must be "month" or "year"');
  let trialDays: number | undefined = 0;
  if (o.trialDays !== undefined) {
    const t = o.trialDays;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > MAX_TRIAL_DAYS) {
      trialDays = c.fail(join(path, 'trialDays'), `must be a whole number of days from 0 to ${MAX_TRIAL_DAYS}`);
    } else trialDays = t;
  }
  const terms: Record<string, PlanFeature> = {};
  let termsOk = true;
  const fp = join(path, 'features');
  if (o.features === undefined) {
    c.fail(fp, 'is required: a map of feature key to terms (a feature absent from a plan is not available on it)');
    termsOk = false;
  } else if (o.features === null || typeof o.features !== 'object' || Array.isArray(o.features)) {
    c.fail(fp, 'must be an object mapping feature keys to terms');
    termsOk = false;
  } else {
    for (const [fk, fv] of Object.entries(o.features as Obj)) {
      const feature = features.get(fk);
      if (!feature) {
        c.fail(join(fp, fk), `unknown feature "${fk}" (declare it under "features" or apply it first)`);
        termsOk = false;
        continue;
      }
      const pf = checkPlanFeature(c, fv, join(fp, fk), fk, feature);
      if (pf) terms[fk] = pf;
      else termsOk = false;
    }
  }
  if (!key || !name || !currency || !price || !interval || trialDays === undefined || !termsOk) return undefined;
  return { planKey: key, name, currency, price, interval, trialDays, features: terms };
}

/**
 * Validate a whole catalog document (DESIGN.md §3) and normalize it. `known` holds the features
 * already stored, which plans may reference without redeclaring. Throws one catalog_invalid
 * error listing every problem with its path, so a file is fixed in one pass.
 */
export function validateCatalog(input: unknown, known: Map<string, Feature>): CatalogSpec {
  const c = new Checker();
  const root = c.object(input, '$', ['features', 'plans']);
  const features: Feature[] = [];
  const plans: PlanSpec[] = [];
  if (root) {
    const all = new Map(known);
    const seen = new Set<string>();
    if (root.features !== undefined && !Array.isArray(root.features)) c.fail('features', 'must be an array');
    const fs = Array.isArray(root.features) ? root.features : [];
    fs.forEach((fv, i) => {
      const f = checkFeature(c, fv, join('features', i), known);
      const key = f?.key ?? (typeof (fv as Obj)?.key === 'string' ? ((fv as Obj).key as string) : undefined);
      if (key !== undefined && seen.has(key)) c.fail(join(join('features', i), 'key'), `duplicate feature "${key}"`);
      if (key !== undefined) seen.add(key);
      if (f) {
        features.push(f);
        all.set(f.key, f);
      }
    });
    if (root.plans !== undefined && !Array.isArray(root.plans)) c.fail('plans', 'must be an array');
    const ps = Array.isArray(root.plans) ? root.plans : [];
    const seenPlans = new Set<string>();
    ps.forEach((pv, i) => {
      const p = checkPlan(c, pv, join('plans', i), all);
      const key = typeof (pv as Obj)?.key === 'string' ? ((pv as Obj).key as string) : undefined;
      if (key !== undefined && seenPlans.has(key)) c.fail(join(join('plans', i), 'key'), `duplicate plan "${key}"`);
      if (key !== undefined) seenPlans.add(key);
      if (p) plans.push(p);
    });
    if (fs.length === 0 && ps.length === 0 && c.problems.length === 0) c.fail('$', 'declares no features and no plans');
  }
  if (c.problems.length > 0) {
    const n = c.problems.length;
    throw new BillingError(
      'catalog_invalid',
      `catalog has ${n} problem${n === 1 ? '' : 's'}; nothing was applied (first: ${c.problems[0].path}: ${c.problems[0].message})`,
      c.problems,
    );
  }
  return { features, plans };
}
