import { z } from 'zod';
import type { Aggregation, DimensionPrice, Feature, PercentTier, PlanFeature, PlanVersion, Pricing, ResetEvery, Tier } from '../domain/catalog.js';
import { dec } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import { isKnownCurrency } from '../domain/money.js';
import { parseQuantity, type QuantityError } from '../domain/quantity.js';

/** One thing wrong with a catalog file, located by its JSON path. */
export interface CatalogProblem {
  path: string;
  message: string;
}

/** A plan as declared in a catalog file: a plan version without its number. */
export type PlanSpec = Omit<PlanVersion, 'version'>;

/** A tax rate (DESIGN.md §13): a percentage, exclusive (added) or inclusive (already in the prices). */
export interface TaxRateSpec {
  name: string;
  rate: string;
  inclusive: boolean;
}

/** A reusable discount a tenant gets with `billing discount add TENANT --coupon KEY`. */
export interface CouponSpec {
  key: string;
  percent: string | null;
  amount: string | null;
  duration: 'once' | 'repeating' | 'forever';
  periods: number | null;
  features: string[] | null;
}

export interface CatalogSpec {
  features: Feature[];
  plans: PlanSpec[];
  /** The default tax rates of tenants without their own; undefined: not declared (left as stored). */
  taxes?: TaxRateSpec[];
  coupons?: CouponSpec[];
}

const FEATURE_KEY = /^[A-Z][A-Z0-9_]{0,63}$/;
const PLAN_KEY = /^(?=.{1,64}$)[a-z0-9]+(-[a-z0-9]+)*$/;
// Prices: plain non-negative decimals, at most 12 decimals, written as strings.
const PRICE = /^\d{1,18}(\.\d{1,12})?$/;
const AGGREGATIONS: Aggregation[] = ['sum', 'count', 'max', 'min', 'last', 'unique', 'avg', 'weighted_sum'];
const MAX_TRIAL_DAYS = 3650;
const METERED_TERMS = ['included', 'hardStop', 'limit', 'overage', 'rollover', 'resetEvery', 'dimension', 'prices'];
const NOT_PRICE = 'must be a decimal string like "0.05"';
const NOT_TIERS = 'must be a non-empty array of {upTo, unitPrice, flatPrice?}';
const NOT_TRIAL = `must be a whole number of days from 0 to ${MAX_TRIAL_DAYS}`;
const QUANTITY_ERRORS: Record<QuantityError, string> = {
  not_a_number: 'must be a number or a decimal string',
  negative: 'must not be negative',
  too_large: 'must be at most 1e12',
  too_precise: 'must have at most 6 decimals',
};

type Obj = Record<string, unknown>;
type Ctx = z.RefinementCtx;

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

function issue(ctx: Ctx, message: string, path: PropertyKey[] = []): void {
  ctx.addIssue({ code: 'custom', message, path });
}

function fail(ctx: Ctx, message: string, path: PropertyKey[] = []): never {
  issue(ctx, message, path);
  return z.NEVER;
}

/** Parse `v` (at `path` under ctx) with `schema`; its problems become ctx's, in order. */
function sub<T>(ctx: Ctx, schema: z.ZodType<T>, v: unknown, path: PropertyKey[]): T | undefined {
  const r = schema.safeParse(v);
  if (r.success) return r.data;
  for (const i of r.error.issues) ctx.addIssue({ ...i, path: [...path, ...i.path] } as z.core.$ZodSuperRefineIssue);
  return undefined;
}

/** An object refusing unknown fields; `allowed` is the order the message lists them in. */
function obj<S extends z.ZodRawShape>(shape: S, allowed = Object.keys(shape)) {
  const unknownField = `unknown field (expected one of: ${allowed.join(', ')})`;
  return z.strictObject(shape, { error: (i) => (i.code === 'unrecognized_keys' ? unknownField : 'must be an object') });
}

// Cross-field rules run even when a field failed, so a file is fixed in one pass.
const onObject = { when: (p: { value: unknown }) => isObj(p.value) };

/** A non-empty string of at most `max` characters (counted before trimming), trimmed. */
const text = (max = 200) =>
  z
    .string({ error: (i) => (i.input === undefined ? 'is required' : 'must be a non-empty string') })
    .transform((v, ctx) =>
      v.trim() === '' ? fail(ctx, 'must be a non-empty string') : v.length > max ? fail(ctx, `must be at most ${max} characters`) : v.trim(),
    );

// Declares a field whose rules depend on its siblings; they are checked with the object.
const later = z.unknown().optional();

const anyText = text();
const keyText = text(64);

const bool = z.boolean({ error: 'must be true or false' });

/** A price: a non-negative decimal string, trimmed; `missing` is the message when absent. */
const priceOf = (missing = NOT_PRICE) =>
  z
    .string({
      error: (i) =>
        typeof i.input === 'number'
          ? `must be a decimal string like "${i.input}" (prices are strings so no float ever touches money)`
          : i.input === undefined
            ? missing
            : NOT_PRICE,
    })
    .transform((v, ctx) => {
      const s = v.trim();
      if (s.startsWith('-')) return fail(ctx, 'must not be negative');
      return PRICE.test(s) ? s : fail(ctx, `"${v}" is not a decimal string with at most 12 decimals, like "0.05"`);
    });

const price = priceOf();

/** A quantity bound (included, limit, upTo, size): number or decimal string, canonicalized. */
function quantityOf(ctx: Ctx, v: unknown): string | undefined {
  const q = parseQuantity(v);
  if (q.ok) return q.value;
  issue(ctx, QUANTITY_ERRORS[q.error]);
  return undefined;
}

const quantity = z.unknown().transform((v, ctx) => quantityOf(ctx, v) ?? z.NEVER);

const packageSize = z.unknown().transform((v, ctx) => {
  if (v === undefined) return fail(ctx, 'is required');
  const size = quantityOf(ctx, v);
  if (size === undefined) return z.NEVER;
  return dec(size).lte(0) ? fail(ctx, 'must be greater than 0') : size;
});

const tier = obj({ upTo: later, unitPrice: price, flatPrice: price.nullish() }).transform(
  (t): Tier => ({ upTo: (t.upTo as string | null | undefined) ?? null, unitPrice: t.unitPrice, flatPrice: t.flatPrice ?? null }),
);

const RATE = /^\d{1,3}(\.\d{1,6})?$/;
const percentRate = z.unknown().transform((v, ctx) => {
  if (typeof v !== 'string' || !RATE.test(v) || dec(v).gt(100)) return fail(ctx, `"${String(v)}" must be a percentage from "0" to "100" as a decimal string, like "2.9"`);
  return v;
});

const percentTier = obj({ upTo: later, rate: percentRate, flatPrice: price.nullish() }).transform(
  (t): PercentTier => ({ upTo: (t.upTo as string | null | undefined) ?? null, rate: t.rate, flatPrice: t.flatPrice ?? null }),
);

/** Tier bounds are quantities rising strictly; only the last tier is open-ended (upTo null or absent). */
const tiersOf = <T>(tierSchema: z.ZodType<T>) => z
  .array(z.unknown(), { error: NOT_TIERS })
  .min(1, NOT_TIERS)
  .transform((ts, ctx) => {
    let prev: string | null = null;
    return ts.map((t, i) => {
      const at = [i, 'upTo'];
      const last = i === ts.length - 1;
      if (isObj(t) && (t.upTo === null || t.upTo === undefined)) {
        if (!last) issue(ctx, 'only the last tier may be open-ended (upTo: null)', at);
      } else if (isObj(t) && last) {
        issue(ctx, 'the last tier must have upTo: null (it prices everything above the previous bound)', at);
      } else if (isObj(t)) {
        const q = parseQuantity(t.upTo);
        if (!q.ok) issue(ctx, QUANTITY_ERRORS[q.error], at);
        else if (dec(q.value).lte(0)) issue(ctx, 'must be greater than 0', at);
        else if (prev !== null && dec(q.value).lte(dec(prev))) issue(ctx, `must be greater than ${prev}`, at);
        // The next bound must exceed this one, even when this one is out of order.
        if (q.ok) {
          prev = q.value;
          t = { ...t, upTo: q.value };
        }
      }
      return sub(ctx, tierSchema, t, [i]) as T;
    });
  });
const tiers = tiersOf(tier);
const percentTiers = tiersOf(percentTier);

const freeEvents = z.unknown().transform((v, ctx) =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 1_000_000_000 ? v : fail(ctx, `${JSON.stringify(v)} must be a whole number of events, 0 or more`),
);

/** percentage's per-event terms; perEventMin may not exceed perEventMax. */
const percentageTerms = {
  rate: percentRate,
  fixedFeePerEvent: price.nullish(),
  freeEvents: freeEvents.nullish(),
  freeAmount: price.nullish(),
  perEventMin: price.nullish(),
  perEventMax: price.nullish(),
};

/** One pricing model: `model` plus its own terms, then the optional minimum and maximum charge. */
function pricingModel(model: Pricing['model'], shape: z.ZodRawShape) {
  const terms = { model: z.literal(model), ...shape, minimum: price.nullish(), maximum: price.nullish() };
  return obj(terms, ['model', 'minimum', 'maximum', ...Object.keys(shape)])
    .superRefine((p: Obj, ctx) => {
      if (typeof p.minimum === 'string' && typeof p.maximum === 'string' && dec(p.maximum).lt(dec(p.minimum))) {
        issue(ctx, `must be at least the minimum (${p.minimum})`, ['maximum']);
      }
      if (typeof p.perEventMin === 'string' && typeof p.perEventMax === 'string' && dec(p.perEventMax).lt(dec(p.perEventMin))) {
        issue(ctx, `must be at least perEventMin (${p.perEventMin})`, ['perEventMax']);
      }
    }, onObject)
    // Optional terms are only written when given, so stored terms stay as small as the file.
    .transform((p: Obj) => Object.fromEntries(Object.entries(p).filter(([, v]) => v !== null && v !== undefined)) as Pricing);
}

const pricing = z.discriminatedUnion(
  'model',
  [
    pricingModel('per_unit', { unitPrice: price }),
    pricingModel('package', { size: packageSize, packagePrice: price }),
    pricingModel('graduated', { tiers }),
    pricingModel('volume', { tiers }),
    pricingModel('graduated_percentage', { tiers: percentTiers }),
    pricingModel('percentage', percentageTerms),
  ],
  { error: (i) => (isObj(i.input) ? 'must be one of per_unit, package, graduated, volume, graduated_percentage, percentage' : 'must be an object with a "model"') },
);

const feature = obj(
  {
    key: keyText.refine((k) => FEATURE_KEY.test(k), { error: (i) => `"${i.input}" must be UPPER_SNAKE (A-Z, 0-9, _; starting with a letter)` }),
    type: z.enum(['metered', 'boolean'], { error: 'must be "metered" or "boolean"' }).optional(),
    name: anyText.optional(),
    unit: keyText.nullish(),
    stripeMeter: text(100).nullish(),
    aggregation: later,
    uniqueBy: later,
  },
  ['key', 'name', 'unit', 'type', 'aggregation', 'uniqueBy', 'stripeMeter'],
)
  .superRefine((f, ctx) => {
      const type = f.type === 'boolean' ? 'boolean' : 'metered';
      if (type === 'boolean') {
        for (const k of ['aggregation', 'uniqueBy', 'stripeMeter', 'unit'] as const) {
          if (f[k] !== undefined) issue(ctx, 'a boolean feature is on or off per plan: it takes no ' + k, [k]);
        }
      } else {
        const known = f.aggregation === undefined || AGGREGATIONS.includes(f.aggregation as Aggregation);
        if (!known) issue(ctx, `must be one of ${AGGREGATIONS.join(', ')}`, ['aggregation']);
        if (f.aggregation === 'unique') {
          if (f.uniqueBy === undefined) issue(ctx, 'is required when aggregation is "unique" (e.g. "user_id")', ['uniqueBy']);
          else sub(ctx, keyText, f.uniqueBy, ['uniqueBy']);
        } else if (f.uniqueBy !== undefined) {
          issue(ctx, 'only applies to aggregation "unique"', ['uniqueBy']);
        }
      }
    }, onObject)
    .transform((f): Feature => {
      const type = f.type ?? 'metered';
      const aggregation = type === 'boolean' ? 'sum' : ((f.aggregation as Aggregation | undefined) ?? 'sum');
      const uniqueBy = aggregation === 'unique' ? (f.uniqueBy as string).trim() : null;
      return { key: f.key, name: f.name ?? f.key, unit: f.unit ?? null, type, aggregation, uniqueBy, stripeMeter: f.stripeMeter ?? null };
    });

// A feature's terms in a plan; which terms apply depends on the feature's type.
type Terms = Omit<PlanFeature, 'featureKey'>;
const terms = obj({ enabled: later, included: later, hardStop: later, limit: later, overage: later, rollover: later, resetEvery: later, dimension: later, prices: later });
const priceEntry = obj({ match: later, included: later, hardStop: later, limit: later, overage: later });
const NOT_PRICES = 'must be a non-empty array of { match, included, overage?, hardStop?, limit? } ending with match "*"';
const rolloverSchema = obj({ max: later });

const booleanTerms = (key: string) =>
  terms.transform((o, ctx): Terms => {
    for (const k of METERED_TERMS) {
      if (k in o) issue(ctx, `${key} is a boolean feature: it takes only "enabled"`, [k]);
    }
    const enabled = sub(ctx, bool.optional(), o.enabled, ['enabled']) ?? true;
    return { enabled, included: null, hardStop: false, limit: null, overage: null };
  });

const meteredTerms: z.ZodType<Terms> = terms.transform((o: Obj, ctx): Terms => {
    if (o.dimension !== undefined || o.prices !== undefined) return dimensionTerms(o, ctx);
    const enabled = sub(ctx, bool.optional(), o.enabled, ['enabled']) ?? true;
    let included: string | null | undefined;
    if ('included' in o) included = o.included === null ? null : sub(ctx, quantity, o.included, ['included']);
    else if (o.enabled === false) included = '0'; // listed as off: nothing to include
    else issue(ctx, 'is required for a metered feature (a number, a decimal string, or null for unlimited)', ['included']);
    const hardStop = sub(ctx, bool.optional(), o.hardStop, ['hardStop']) ?? false;
    let limit = o.limit === undefined || o.limit === null ? null : sub(ctx, quantity, o.limit, ['limit']);
    if (limit === null && hardStop) {
      if (included === null) issue(ctx, 'needs a limit: included is unlimited (null) and no limit is given', ['hardStop']);
      limit = included;
    }
    if (typeof limit === 'string' && typeof included === 'string' && dec(limit).lt(dec(included))) {
      issue(ctx, `must be at least included (${included})`, ['limit']);
    }
    let overage: Pricing | null | undefined = null;
    if (o.overage !== undefined && o.overage !== null) {
      overage = sub(ctx, pricing, o.overage, ['overage']);
      if (overage?.model === 'percentage') {
        if (included !== undefined && included !== '0') {
          issue(ctx, 'must be 0 with percentage pricing: its fee applies to every event (give a free allowance with freeEvents / freeAmount)', ['included']);
        }
      } else if (included === null) issue(ctx, 'has no effect when included is null (unlimited); remove it or set included', ['overage']);
    }
    let rollover: { max: string } | undefined;
    if (o.rollover !== undefined && o.rollover !== null) {
      const r = sub(ctx, rolloverSchema, o.rollover, ['rollover']);
      if (r && r.max === undefined) issue(ctx, 'is required (the most units carried into a period)', ['rollover', 'max']);
      const max = r && r.max !== undefined ? sub(ctx, quantity, r.max, ['rollover', 'max']) : undefined;
      if (max !== undefined) rollover = { max };
      if (included === null) issue(ctx, 'has no effect when included is null (unlimited); remove it or set included', ['rollover']);
      else if (overage?.model === 'percentage') issue(ctx, 'has no effect with percentage pricing (nothing is included to carry)', ['rollover']);
    }
    let resetEvery: ResetEvery | undefined;
    if (o.resetEvery !== undefined && o.resetEvery !== null) {
      resetEvery = sub(ctx, z.enum(['day', 'week', 'month'], { error: 'must be "day", "week" or "month"' }), o.resetEvery, ['resetEvery']);
      if (o.rollover !== undefined && o.rollover !== null) issue(ctx, 'cannot be combined with rollover (each window starts afresh; nothing carries)', ['resetEvery']);
      else if (included === null && limit === null) issue(ctx, 'has no effect when included is null (unlimited) and there is no limit', ['resetEvery']);
      else if (overage?.model === 'percentage') issue(ctx, 'has no effect with percentage pricing (every event is priced; nothing is included per window)', ['resetEvery']);
    }
  return {
    enabled,
    included: included as string | null,
    hardStop,
    limit: limit as string | null,
    overage: overage as Pricing | null,
    ...(rollover?.max !== undefined ? { rollover: { max: rollover.max } } : {}),
    ...(resetEvery !== undefined ? { resetEvery } : {}),
  };
});

/**
 * Prices by dimension (DESIGN.md §14): `dimension` names a metadata field, `prices` holds one
 * entry per value, each validated as a feature's own terms; the feature-level terms are unused.
 */
function dimensionTerms(o: Obj, ctx: Ctx): Terms {
  const enabled = sub(ctx, bool.optional(), o.enabled, ['enabled']) ?? true;
  if (o.dimension === undefined) issue(ctx, 'is required with prices (the metadata field whose value picks the price, e.g. "model")', ['dimension']);
  const dimension = o.dimension === undefined ? undefined : sub(ctx, keyText, o.dimension, ['dimension']);
  for (const k of ['included', 'hardStop', 'limit', 'overage']) {
    if (k in o) issue(ctx, `cannot be combined with prices: each prices entry sets its own ${k}`, [k]);
  }
  if (o.rollover !== undefined) issue(ctx, 'cannot be combined with prices by dimension (not supported yet)', ['rollover']);
  if (o.resetEvery !== undefined) issue(ctx, 'cannot be combined with prices by dimension (not supported yet)', ['resetEvery']);
  const prices: DimensionPrice[] = [];
  if (!Array.isArray(o.prices) || o.prices.length === 0) issue(ctx, NOT_PRICES, ['prices']);
  else {
    const seen = new Set<string>();
    const list: unknown[] = o.prices;
    list.forEach((e, i) => {
      const entry = sub(ctx, priceEntry, e, ['prices', i]);
      if (!entry) return;
      const match = sub(ctx, anyText, entry.match, ['prices', i, 'match']);
      if (match === undefined) return;
      if (seen.has(match)) issue(ctx, `"${match}" is matched by an earlier entry`, ['prices', i, 'match']);
      seen.add(match);
      if (match === '*' && i !== list.length - 1) issue(ctx, 'must be the last entry ("*" prices every value not matched before)', ['prices', i, 'match']);
      const { match: _m, ...rest } = entry;
      const t = sub(ctx, meteredTerms, rest, ['prices', i]);
      if (!t) return;
      if (t.overage?.model === 'percentage') issue(ctx, 'cannot be percentage pricing with prices by dimension (not supported yet)', ['prices', i, 'overage', 'model']);
      prices.push({ match, included: t.included, hardStop: t.hardStop, limit: t.limit, overage: t.overage });
    });
    if (!seen.has('*')) issue(ctx, 'needs a last entry with match "*" (the price of every other value, and of events without the field)', ['prices']);
  }
  return { enabled, included: null, hardStop: false, limit: null, overage: null, ...(dimension !== undefined ? { dimension } : {}), prices };
}

/** A plan; `features` are those it may reference: stored ones and those declared in the same file. */
function planSchema(features: Map<string, Feature>) {
  const booleans = new Map<string, z.ZodType<Terms>>();
  const termsOf = (f: Feature) => {
    if (f.type !== 'boolean') return meteredTerms;
    if (!booleans.has(f.key)) booleans.set(f.key, booleanTerms(f.key));
    return booleans.get(f.key)!;
  };
  return obj({
    key: keyText.refine((k) => PLAN_KEY.test(k), { error: (i) => `"${i.input}" must be lower-kebab (a-z, 0-9, single dashes)` }),
    name: anyText.optional(),
    currency: z.unknown().transform((v, ctx) => {
      const code = sub(ctx, text(3), v, [])?.toUpperCase();
      if (code === undefined) return z.NEVER;
      return isKnownCurrency(code) ? code : fail(ctx, `"${v}" is not an ISO 4217 currency code`);
    }),
    price: priceOf('is required (base fee per interval, e.g. "29.00")'),
    interval: z.enum(['month', 'year'], { error: (i) => (i.input === undefined ? 'is required ("month" or "year")' : 'must be "month" or "year"') }),
    trialDays: z
      .number({ error: NOT_TRIAL })
      .refine((t) => Number.isInteger(t) && t >= 0 && t <= MAX_TRIAL_DAYS, NOT_TRIAL)
      .optional(),
    minimumCommitment: price.nullish(),
    spendThreshold: price.refine((p) => dec(p).gt(0), { error: 'must be above 0' }).nullish(),
    features: z.unknown().transform((v, ctx) => {
      if (v === undefined) return fail(ctx, 'is required: a map of feature key to terms (a feature absent from a plan is not available on it)');
      if (!isObj(v)) return fail(ctx, 'must be an object mapping feature keys to terms');
      const terms: Record<string, PlanFeature> = {};
      for (const [fk, fv] of Object.entries(v)) {
        const feature = features.get(fk);
        if (!feature) issue(ctx, `unknown feature "${fk}" (declare it under "features" or apply it first)`, [fk]);
        else {
          terms[fk] = { featureKey: fk, ...(sub(ctx, termsOf(feature), fv, [fk]) as Terms) };
          // Percentage prices each event's amount: only a feature summing amounts has them.
          if (terms[fk].overage?.model === 'percentage' && feature.aggregation !== undefined && feature.aggregation !== 'sum') {
            issue(ctx, `percentage prices each event's amount: ${fk} aggregates "${feature.aggregation}", it needs "sum"`, [fk, 'overage', 'model']);
          }
          // Values are read by adding up their events: only additive sums and counts split by value.
          if (terms[fk].dimension && feature.aggregation !== undefined && !['sum', 'count'].includes(feature.aggregation)) {
            issue(ctx, `prices by dimension split ${fk}'s events by value: it aggregates "${feature.aggregation}", it needs "sum" or "count"`, [fk, 'dimension']);
          }
          // weighted_sum is a level averaged over the whole billing period: a window has no level of its own.
          if (terms[fk].resetEvery && feature.aggregation === 'weighted_sum') {
            issue(ctx, `has no meaning for ${fk}: weighted_sum averages a level over the whole billing period`, [fk, 'resetEvery']);
          }
        }
      }
      return terms;
    }),
  })
    .superRefine((p, ctx) => {
      // A window as long as the period (or longer) would be the period itself.
      const allowed = p.interval === 'year' ? ['day', 'week', 'month'] : ['day', 'week'];
      for (const [fk, pf] of Object.entries(p.features ?? {})) {
        if (pf.resetEvery && !allowed.includes(pf.resetEvery)) {
          issue(ctx, `must be shorter than the plan's interval (${p.interval}): one of ${allowed.map((a) => `"${a}"`).join(', ')}`, ['features', fk, 'resetEvery']);
        }
      }
    })
    .transform(
    (p): PlanSpec => ({
      planKey: p.key,
      name: p.name ?? p.key,
      currency: p.currency,
      price: p.price,
      interval: p.interval,
      trialDays: p.trialDays ?? 0,
      ...(p.minimumCommitment == null || dec(p.minimumCommitment).isZero() ? {} : { minimumCommitment: p.minimumCommitment }),
      ...(p.spendThreshold == null ? {} : { spendThreshold: p.spendThreshold }),
      features: p.features,
    }),
  );
}

const root = obj({ features: later, plans: later, taxes: later, coupons: later });

const percentage = price.refine((p) => dec(p).lte(100), { error: 'must be at most 100' });

const taxRate = obj({ name: keyText, rate: percentage, inclusive: bool.optional() }).transform(
  (t): TaxRateSpec => ({ name: t.name, rate: dec(t.rate).toFixed(), inclusive: t.inclusive ?? false }),
);

const DURATIONS = ['once', 'repeating', 'forever'] as const;

/** A coupon; `features` are the metered features it may name. */
function couponSchema(features: Map<string, Feature>) {
  return obj({ key: keyText, percent: later, amount: later, duration: later, periods: later, features: later }).transform((c, ctx): CouponSpec => {
    if ((c.percent === undefined) === (c.amount === undefined)) issue(ctx, 'needs exactly one of "percent" and "amount"');
    const percent = c.percent === undefined ? null : sub(ctx, percentage.refine((p) => dec(p).gt(0), { error: 'must be above 0' }), c.percent, ['percent']);
    const amount = c.amount === undefined ? null : sub(ctx, price.refine((p) => dec(p).gt(0), { error: 'must be above 0' }), c.amount, ['amount']);
    const duration = c.duration === undefined ? 'once' : sub(ctx, z.enum(DURATIONS, { error: 'must be "once", "repeating" or "forever"' }), c.duration, ['duration']);
    let periods: number | null = null;
    if (duration === 'repeating') {
      const ok = typeof c.periods === 'number' && Number.isInteger(c.periods) && c.periods >= 1 && c.periods <= 1000;
      if (ok) periods = c.periods as number;
      else issue(ctx, 'a repeating coupon needs a whole number of invoices from 1 to 1000', ['periods']);
    } else if (c.periods !== undefined) issue(ctx, 'applies only to duration "repeating"', ['periods']);
    let keys: string[] | null = null;
    if (c.features !== undefined && c.features !== null) {
      if (!Array.isArray(c.features) || c.features.some((k) => typeof k !== 'string')) issue(ctx, 'must be an array of feature keys', ['features']);
      else {
        c.features.forEach((k: string, i: number) => {
          const f = features.get(k);
          if (!f) issue(ctx, `unknown feature "${k}"`, ['features', i]);
          else if (f.type !== 'metered') issue(ctx, `${k} is a boolean feature: it has no lines to discount`, ['features', i]);
        });
        keys = c.features.length > 0 ? [...new Set(c.features as string[])].sort() : null;
      }
    }
    return { key: c.key, percent: percent ?? null, amount: amount ?? null, duration: duration ?? 'once', periods, features: keys };
  });
}

function join(path: string, key: PropertyKey): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  const k = String(key);
  const seg = /^[A-Za-z0-9_-]+$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`;
  return path === '' ? seg.replace(/^\./, '') : path + seg;
}

/** Zod issues as catalog problems, paths written from `base` (e.g. `plans[1].features.API_CALL`). */
function problemsOf(issues: readonly z.core.$ZodIssue[], base: string): CatalogProblem[] {
  const out: Array<CatalogProblem & { at: PropertyKey[] }> = [];
  const problem = (at: PropertyKey[], message: string) => ({ at, path: at.reduce<string>(join, base), message });
  const inside = (at: PropertyKey[], object: PropertyKey[]) => at.length > object.length && object.every((k, n) => at[n] === k);
  for (const i of issues) {
    if (i.code !== 'unrecognized_keys') {
      out.push(problem(i.path, i.message));
      continue;
    }
    // zod reports an object's unknown fields after its fields' problems; the catalog lists them first.
    let at = out.length;
    while (at > 0 && inside(out[at - 1].at, i.path)) at--;
    out.splice(at, 0, ...i.keys.map((k) => problem([...i.path, k], i.message)));
  }
  return out.map(({ path, message }) => ({ path, message }));
}

/**
 * Validate a whole catalog document (DESIGN.md §3) and normalize it. `known` holds the features
 * already stored, which plans may reference without redeclaring. Throws one catalog_invalid
 * error listing every problem with its path, so a file is fixed in one pass.
 */
export function validateCatalog(input: unknown, known: Map<string, Feature>): CatalogSpec {
  const problems: CatalogProblem[] = [];
  const parse = <T>(schema: z.ZodType<T>, v: unknown, path: string): T | undefined => {
    const r = schema.safeParse(v);
    if (!r.success) problems.push(...problemsOf(r.error.issues, path));
    return r.data;
  };
  const features: Feature[] = [];
  const plans: PlanSpec[] = [];
  const coupons: CouponSpec[] = [];
  let taxes: TaxRateSpec[] | undefined;
  parse(root, input, '$');
  if (isObj(input)) {
    const all = new Map(known);
    const seen = new Set<string>();
    if (input.features !== undefined && !Array.isArray(input.features)) problems.push({ path: 'features', message: 'must be an array' });
    const fs: unknown[] = Array.isArray(input.features) ? input.features : [];
    fs.forEach((fv, i) => {
      const f = parse(feature, fv, `features[${i}]`);
      const raw = (fv as Obj | null | undefined)?.key;
      const key = keyText.safeParse(raw);
      // A feature with a usable key is compared with the stored one, and plans may use it even when
      // its other fields have problems: only its key and type matter there.
      const declared = f ?? (isObj(fv) && key.success ? ({ key: key.data, type: fv.type === 'boolean' ? 'boolean' : 'metered' } as Feature) : undefined);
      const stored = declared && known.get(declared.key);
      if (declared && stored && stored.type !== declared.type) {
        const message = `${declared.key} is already a ${stored.type} feature; its type cannot change (plans and events depend on it; use a new key)`;
        problems.push({ path: `features[${i}].type`, message });
      }
      const dup = key.success ? key.data : typeof raw === 'string' ? raw : undefined;
      if (dup !== undefined && seen.has(dup)) problems.push({ path: `features[${i}].key`, message: `duplicate feature "${dup}"` });
      if (dup !== undefined) seen.add(dup);
      if (f) features.push(f);
      if (declared) all.set(declared.key, declared);
    });
    if (input.plans !== undefined && !Array.isArray(input.plans)) problems.push({ path: 'plans', message: 'must be an array' });
    const ps: unknown[] = Array.isArray(input.plans) ? input.plans : [];
    const plan = planSchema(all);
    const seenPlans = new Set<string>();
    ps.forEach((pv, i) => {
      const p = parse(plan, pv, `plans[${i}]`);
      const raw = (pv as Obj | null | undefined)?.key;
      if (typeof raw === 'string' && seenPlans.has(raw)) problems.push({ path: `plans[${i}].key`, message: `duplicate plan "${raw}"` });
      if (typeof raw === 'string') seenPlans.add(raw);
      if (p) plans.push(p);
    });
    if (input.taxes !== undefined) {
      if (!Array.isArray(input.taxes)) problems.push({ path: 'taxes', message: 'must be an array of {name, rate, inclusive?} (empty: no default tax)' });
      else {
        taxes = [];
        const names = new Set<string>();
        input.taxes.forEach((tv, i) => {
          const t = parse(taxRate, tv, `taxes[${i}]`);
          if (t && names.has(t.name)) problems.push({ path: `taxes[${i}].name`, message: `duplicate tax "${t.name}"` });
          if (t) names.add(t.name);
          if (t) taxes!.push(t);
        });
      }
    }
    if (input.coupons !== undefined && !Array.isArray(input.coupons)) problems.push({ path: 'coupons', message: 'must be an array' });
    const cs: unknown[] = Array.isArray(input.coupons) ? input.coupons : [];
    const coupon = couponSchema(all);
    const couponKeys = new Set<string>();
    cs.forEach((cv, i) => {
      const c = parse(coupon, cv, `coupons[${i}]`);
      if (c && couponKeys.has(c.key)) problems.push({ path: `coupons[${i}].key`, message: `duplicate coupon "${c.key}"` });
      if (c) couponKeys.add(c.key);
      if (c) coupons.push(c);
    });
    const empty = fs.length === 0 && ps.length === 0 && cs.length === 0 && input.taxes === undefined;
    if (empty && problems.length === 0) problems.push({ path: '$', message: 'declares no features and no plans' });
  }
  if (problems.length > 0) {
    const n = problems.length;
    throw new BillingError(
      'catalog_invalid',
      `catalog has ${n} problem${n === 1 ? '' : 's'}; nothing was applied (first: ${problems[0].path}: ${problems[0].message})`,
      problems,
    );
  }
  return { features, plans, ...(taxes === undefined ? {} : { taxes }), ...(coupons.length === 0 ? {} : { coupons }) };
}
