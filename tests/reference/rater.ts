// A deliberately simple, slow re-implementation of the billing rules (DESIGN.md §3, §5, §8;
// README "Catalog", "Invoices"), written from the spec and not from src/: plain loops over
// every event, exact decimals, its own month arithmetic, tier walk and rounding. The property
// test (tests/reference-rater.test.ts) requires the real pipeline to agree with it.
import { Decimal } from '../../src/domain/decimal.js';

// ---- currencies -------------------------------------------------------------------------

/** ISO 4217 minor-unit digits of the currencies the tests use. */
export const ISO_DIGITS: Record<string, number> = { USD: 2, EUR: 2, JPY: 0, HUF: 2, ISK: 0, KWD: 3, BHD: 3 };

/** Currencies whose invoice totals are rounded to 10 minor units by a `rounding` line. */
const ROUND_TO_TEN = new Set(['BHD', 'JOD', 'KWD', 'OMR', 'TND']);

/** Stripe's decimal places per currency (its API, not ISO: ISK, HUF and TWD are 2 there). */
const STRIPE_ZERO = new Set(['BIF', 'CLP', 'DJF', 'GNF', 'JPY', 'KMF', 'KRW', 'MGA', 'PYG', 'RWF', 'UGX', 'VND', 'VUV', 'XAF', 'XOF', 'XPF']);
const STRIPE_THREE = new Set(['BHD', 'JOD', 'KWD', 'OMR', 'TND']);

export function isoDigits(currency: string): number {
  const d = ISO_DIGITS[currency];
  if (d === undefined) throw new Error(`reference rater: no ISO digits for ${currency}`);
  return d;
}

const TEN = new Decimal(10);

/** Half away from zero, to an integer. */
function roundHalfAwayToInteger(x: Decimal): bigint {
  const magnitude = x.abs().plus('0.5').floor();
  return BigInt((x.isNegative() ? magnitude.neg() : magnitude).toFixed(0));
}

/** A major-unit amount rounded once to the currency's minor unit, as an integer of minor units. */
export function toMinor(major: Decimal, currency: string): bigint {
  return roundHalfAwayToInteger(major.times(TEN.pow(isoDigits(currency))));
}

/** Minor units as a major-unit string with exactly the currency's digits ("-1.50"). */
export function minorToMajor(minor: bigint, currency: string): string {
  const d = isoDigits(currency);
  const neg = minor < 0n;
  const s = (neg ? -minor : minor).toString().padStart(d + 1, '0');
  const whole = d === 0 ? s : s.slice(0, s.length - d);
  const frac = d === 0 ? '' : `.${s.slice(s.length - d)}`;
  return `${neg ? '-' : ''}${whole}${frac}`;
}

/** The integer Stripe expects for a major-unit amount: amount × 10^(Stripe's decimals). */
export function stripeUnits(amountMajor: string, currency: string): bigint {
  const c = currency.toUpperCase();
  const d = STRIPE_ZERO.has(c) ? 0 : STRIPE_THREE.has(c) ? 3 : 2;
  const x = new Decimal(amountMajor).times(TEN.pow(d));
  if (!x.isInteger()) throw new Error(`reference rater: ${amountMajor} ${c} is not a whole number of Stripe units`);
  return BigInt(x.toFixed(0));
}

// ---- catalog (the JSON of DESIGN.md §3) ---------------------------------------------------

export type Num = string | number;
export interface RefTier { upTo: Num | null; unitPrice?: string; rate?: string; flatPrice?: string }
export type RefPricing = {
  model: 'per_unit' | 'package' | 'graduated' | 'volume' | 'graduated_percentage' | 'percentage';
  /** percentage (DESIGN.md §14): rate in percent, per-event fee, free events / amount, per-event bounds. */
  rate?: string;
  fixedFeePerEvent?: string;
  freeEvents?: number;
  freeAmount?: string;
  perEventMin?: string;
  perEventMax?: string;
  unitPrice?: string;
  size?: Num;
  packagePrice?: string;
  /** graduated_percentage tiers carry a rate in percent instead of a unit price. */
  tiers?: RefTier[];
  minimum?: string;
  maximum?: string;
};
export interface RefPlanFeature {
  included?: Num | null;
  overage?: RefPricing | null;
  enabled?: boolean;
  rollover?: { max: Num };
  resetEvery?: 'day' | 'week' | 'month';
  /** DESIGN.md §14 prices by dimension: the metadata field, and each value's terms (the last matches "*"). */
  dimension?: string;
  prices?: RefPrice[];
}
export interface RefPrice { match: string; included: Num | null; overage?: RefPricing | null; hardStop?: boolean; limit?: Num }
export interface RefPlan {
  key: string;
  name: string;
  currency: string;
  price: string;
  interval: 'month';
  trialDays?: number;
  /** DESIGN.md §13: a period's subtotal below it gets a true-up line. */
  minimumCommitment?: string;
  features: Record<string, RefPlanFeature>;
}
export interface RefFeature { key: string; name: string; type?: 'boolean'; aggregation?: 'sum' | 'count' | 'max' | 'min' | 'last' | 'unique' | 'avg' | 'weighted_sum'; uniqueBy?: string }
export interface RefCatalog { features: RefFeature[]; plans: RefPlan[] }

/** Terms of one feature as rated: the plan's, after the tenant's override. */
export interface Terms {
  enabled: boolean;
  /** Per reset window when `resetEvery` is set. */
  included: Decimal | null;
  pricing: RefPricing | null;
  /** DESIGN.md §14: included (and the limit) apply per window of this length inside the period. */
  resetEvery?: 'day' | 'week' | 'month';
  /** With reset windows: the units the period's grants cover of the windows' billable total. */
  granted?: Decimal;
  /** Prices by dimension: the field and the entries; included and pricing are then unused. */
  dimension?: string;
  prices?: RefPrice[];
}

/** A value's terms: the first entry matching it, else the "*" entry. */
export function entryTerms(terms: Terms, value: string): Terms {
  const e = terms.prices!.find((p) => p.match === value) ?? terms.prices!.find((p) => p.match === '*')!;
  return { enabled: terms.enabled, included: e.included === null ? null : D(e.included), pricing: e.overage ?? null };
}

// ---- time (DESIGN.md §5) ----------------------------------------------------------------

const DAY = 86_400_000;

function lastDayOfMonth(year: number, month0: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month0];
}

/** The anchor moved n months on, its day of month clamped to the month's end, same time of day. */
export function addMonths(anchor: number, n: number): number {
  const a = new Date(anchor);
  let year = a.getUTCFullYear();
  let month0 = a.getUTCMonth() + n;
  while (month0 > 11) { month0 -= 12; year++; }
  while (month0 < 0) { month0 += 12; year--; }
  const day = Math.min(a.getUTCDate(), lastDayOfMonth(year, month0));
  const timeOfDay = anchor - Date.UTC(a.getUTCFullYear(), a.getUTCMonth(), a.getUTCDate());
  return Date.UTC(year, month0, day) + timeOfDay;
}

export interface Span { start: number; end: number }

/** The monthly anniversary period of `anchor` containing t (t at or after the anchor). */
export function anniversaryAt(anchor: number, t: number): Span {
  for (let k = 0; ; k++) {
    const start = addMonths(anchor, k);
    const end = addMonths(anchor, k + 1);
    if (t >= start && t < end) return { start, end };
    if (start > t) throw new Error('reference rater: instant before the anchor');
  }
}

function overlap(a: Span, b: Span): Span | null {
  const start = Math.max(a.start, b.start);
  const end = Math.min(a.end, b.end);
  return start < end ? { start, end } : null;
}

// ---- pricing (DESIGN.md §3) ---------------------------------------------------------------

const D = (x: Num) => new Decimal(String(x));

/** The pricing model's amount for a billable quantity, before minimum and maximum. */
export function modelAmount(p: RefPricing, billable: Decimal): Decimal {
  if (billable.lte(0)) return new Decimal(0);
  if (p.model === 'per_unit') return billable.times(D(p.unitPrice!));
  if (p.model === 'package') {
    let packages = new Decimal(0);
    while (packages.times(D(p.size!)).lt(billable)) packages = packages.plus(1);
    return packages.times(D(p.packagePrice!));
  }
  const tiers = p.tiers!;
  if (p.model === 'graduated_percentage') {
    // DESIGN.md §14: each tier charges rate % of the amount inside it, plus its flat price.
    let total = new Decimal(0);
    let lower = new Decimal(0);
    for (const tier of tiers) {
      if (billable.lte(lower)) break;
      const upper = tier.upTo === null ? billable : Decimal.min(billable, D(tier.upTo));
      total = total.plus(upper.minus(lower).times(D(tier.rate!)).div(100)).plus(D(tier.flatPrice ?? '0'));
      if (tier.upTo === null) break;
      lower = D(tier.upTo);
    }
    return total;
  }
  if (p.model === 'graduated') {
    let total = new Decimal(0);
    let lower = new Decimal(0);
    for (const tier of tiers) {
      if (billable.lte(lower)) break;
      const upper = tier.upTo === null ? billable : Decimal.min(billable, D(tier.upTo));
      total = total.plus(upper.minus(lower).times(D(tier.unitPrice!))).plus(D(tier.flatPrice ?? '0'));
      if (tier.upTo === null) break;
      lower = D(tier.upTo);
    }
    return total;
  }
  // volume: every unit at the first tier whose (inclusive) upTo holds the whole quantity
  for (const tier of tiers) {
    if (tier.upTo === null || billable.lte(D(tier.upTo))) {
      return billable.times(D(tier.unitPrice!)).plus(D(tier.flatPrice ?? '0'));
    }
  }
  throw new Error('reference rater: tiers without a last upTo null');
}

/**
 * percentage (DESIGN.md §14), from the window's events in time order: walking them, an event
 * is free while its position is within freeEvents and the amounts so far (its own included)
 * are within freeAmount; from the first that is not, every event pays rate % of its amount
 * plus the fee, held between the per-event minimum and maximum. No rounding per event.
 */
export function percentageAmount(p: RefPricing, events: Decimal[]): Decimal {
  let total = new Decimal(0);
  let soFar = new Decimal(0);
  let paying = false;
  for (let i = 0; i < events.length; i++) {
    soFar = soFar.plus(events[i]);
    const withinCount = p.freeEvents === undefined || i + 1 <= p.freeEvents;
    const withinAmount = p.freeAmount === undefined || soFar.lte(D(p.freeAmount));
    const anyFree = p.freeEvents !== undefined || p.freeAmount !== undefined;
    if (!paying && anyFree && withinCount && withinAmount) continue;
    paying = true;
    let fee = events[i].times(D(p.rate!)).div(100).plus(D(p.fixedFeePerEvent ?? '0'));
    if (p.perEventMax !== undefined && fee.gt(D(p.perEventMax))) fee = D(p.perEventMax);
    if (p.perEventMin !== undefined && fee.lt(D(p.perEventMin))) fee = D(p.perEventMin);
    total = total.plus(fee);
  }
  return total;
}

export interface Rated { used: Decimal; billable: Decimal; precise: Decimal; minor: bigint }

/** What is billable: used − included, never below 0; percentage terms charge every event (no included). */
export function billableOf(terms: Terms, used: Decimal): Decimal {
  if (terms.pricing?.model === 'percentage') return used;
  return terms.included === null ? new Decimal(0) : Decimal.max(0, used.minus(terms.included));
}

/**
 * One feature's usage for a period: billable = max(0, used − included), priced, capped, rounded
 * once. `events`: the period's event amounts in time order, which percentage prices.
 */
export function rate(terms: Terms, used: Decimal, currency: string, events: Decimal[] = []): Rated {
  const billable = billableOf(terms, used);
  let precise = new Decimal(0);
  if (terms.enabled && terms.pricing) {
    const p = terms.pricing;
    precise = p.model === 'percentage' ? percentageAmount(p, events) : modelAmount(p, billable);
    if (p.minimum !== undefined && precise.lt(D(p.minimum))) precise = D(p.minimum);
    if (p.maximum !== undefined && precise.gt(D(p.maximum))) precise = D(p.maximum);
  }
  return { used, billable, precise, minor: toMinor(precise, currency) };
}

// ---- the billing world --------------------------------------------------------------------

export interface RefEvent {
  tenant: string;
  feature: string;
  quantity: string;
  occurredAt: number;
  userId?: string;
  metadata?: Record<string, string>;
}

interface Segment { plan: string; start: number; end: number | null }

interface Sub {
  start: number;
  trialEnd: number | null;
  cancelAt: number | null;
  segments: Segment[];
}

interface Override { included?: string | null; unitPrice?: string }

/** A tenant discount (DESIGN.md §13): exactly one of percent and amount. */
export interface RefDiscount {
  percent?: string;
  amount?: string;
  duration: 'once' | 'repeating' | 'forever';
  periods?: number;
  features?: string[];
  /** Applies to invoices whose period ends after this instant. */
  start: number;
}

export interface RefLine {
  kind: 'base_fee' | 'overage' | 'minimum' | 'late_usage' | 'credit' | 'commitment' | 'discount' | 'tax' | 'prepaid_credit' | 'rounding';
  feature: string | null;
  plan: string | null;
  quantity: Decimal | null;
  amountMinor: bigint;
  /** The period the line bills (a late line: the earlier period). */
  periodStart: number;
}

/** A tax rate (DESIGN.md §13), the tenant's own. */
export interface RefTaxRate { name: string; rate: string; inclusive: boolean }

/** A prepaid credit grant (DESIGN.md §13) in the given currency. */
export interface RefGrant {
  amount: string;
  currency: string;
  priority: number;
  effective: number;
  expires?: number;
  recurring?: 'monthly';
}

/** A grant of units of one feature (DESIGN.md §14): tops up its included quantity while live. */
export interface RefUnitGrant {
  feature: string;
  quantity: string;
  priority: number;
  effective: number;
  expires?: number;
}

export interface RefInvoice {
  tenant: string;
  start: number;
  end: number;
  currency: string;
  lines: RefLine[];
  /** Subtotal − discounts + exclusive taxes (before credits and cash rounding). */
  grossMinor: bigint;
  /** Every line, credits and rounding included: what is due before credit notes. */
  totalMinor: bigint;
  /** What credit notes took off the amount due. */
  noteReductionMinor: bigint;
  /** Credit notes' gross amounts. */
  notesMinor: bigint;
}

interface Billed { minor: bigint; used: Decimal; terms: Terms; billable: Decimal }

/**
 * The whole billing world, replayed from the same actions the real pipeline gets, each at its
 * instant, in order. One subscription per tenant; every plan has one version.
 */
export class ReferenceBilling {
  /** `${key}@${version}` → that plan version; every change to a plan's terms is a new version. */
  private readonly versions = new Map<string, RefPlan>();
  private readonly latest = new Map<string, number>();
  private readonly features = new Map<string, RefFeature>();
  /** tenant → its subscriptions, oldest first (a new one starts once the previous has ended). */
  private readonly subs = new Map<string, Sub[]>();
  private readonly overrides = new Map<string, Map<string, Override>>();
  private readonly events: RefEvent[] = [];
  /** tenant → invoices, oldest first. */
  readonly invoices = new Map<string, RefInvoice[]>();
  /** `${tenant}|${feature}|${periodStart}` → what invoices billed for it so far. */
  private readonly billed = new Map<string, Billed>();
  /** `${tenant}|${periodStart}` → each feature's terms when the period was invoiced. */
  private readonly invoicedTerms = new Map<string, Map<string, Terms | null>>();
  /** tenant → its discounts in the order they were added, each with the invoices it was used on. */
  private readonly discounts = new Map<string, Array<RefDiscount & { used: number }>>();
  /** tenant → its tax rates by name (several may apply, e.g. state and city). */
  private readonly taxes = new Map<string, Map<string, RefTaxRate>>();
  /** tenant → its grants in creation order, each with what invoices took per instance. */
  private readonly grants = new Map<string, Array<RefGrant & { uses: Map<number, bigint> }>>();

  /** tenant → its unit grants in creation order, with what each invoiced period drew. */
  private readonly unitGrants = new Map<string, Array<RefUnitGrant & { id: string; voided?: number; drawn: Map<number, Decimal> }>>();

  constructor(catalog: RefCatalog) {
    this.applyCatalog(catalog);
  }

  /** `catalog apply`: a plan whose terms differ from its latest version gets a new version. */
  applyCatalog(catalog: RefCatalog): void {
    for (const f of catalog.features) this.features.set(f.key, f);
    const terms = (p: RefPlan) => JSON.stringify([p.currency, D(p.price).toFixed(), p.interval, p.trialDays ?? 0, p.minimumCommitment === undefined ? null : D(p.minimumCommitment).toFixed(), p.features]);
    for (const p of catalog.plans) {
      const v = this.latest.get(p.key);
      if (v !== undefined && terms(this.versions.get(`${p.key}@${v}`)!) === terms(p)) continue;
      const next = (v ?? 0) + 1;
      this.latest.set(p.key, next);
      this.versions.set(`${p.key}@${next}`, p);
    }
  }

  /** A plan version by `key@version`, or a plan's latest version by key. */
  plan(id: string): RefPlan {
    const p = this.versions.get(id.includes('@') ? id : `${id}@${this.latest.get(id)}`);
    if (!p) throw new Error(`reference rater: unknown plan ${id}`);
    return p;
  }

  /** `key@version` of a plan's latest version. */
  latestVersion(key: string): string {
    return `${key}@${this.latest.get(key)}`;
  }

  subscribe(t: number, tenant: string, planKey: string, trialDays?: number): void {
    const days = trialDays ?? this.plan(planKey).trialDays ?? 0;
    const sub: Sub = { start: t, trialEnd: days > 0 ? t + days * DAY : null, cancelAt: null, segments: [{ plan: this.latestVersion(planKey), start: t, end: null }] };
    this.subs.set(tenant, [...(this.subs.get(tenant) ?? []), sub]);
    if (!this.invoices.has(tenant)) this.invoices.set(tenant, []);
  }

  /** The plan version (`key@version`) of the tenant's latest subscription in force at t. */
  planAt(tenant: string, t: number): string {
    return this.planOf(this.sub(tenant), t);
  }

  private planOf(s: Sub, t: number): string {
    const seg = s.segments.find((g) => g.start <= t && (g.end === null || t < g.end));
    return (seg ?? s.segments[s.segments.length - 1]).plan;
  }

  /**
   * A move to a plan's latest version: a higher base price takes effect now, anything else at
   * period end, unless `at` says.
   */
  change(t: number, tenant: string, planKey: string, at?: 'now' | 'period-end'): void {
    const s = this.sub(tenant);
    const current = this.planOf(s, t);
    const target = this.latestVersion(planKey);
    if (target === current) {
      // Back to the plan in force: the scheduled change is dropped.
      s.segments = s.segments.filter((g) => g.start <= t);
      s.segments[s.segments.length - 1].end = s.cancelAt;
      return;
    }
    const upgrade = D(this.plan(target).price).gt(D(this.plan(current).price));
    const when = at ?? (upgrade ? 'now' : 'period-end');
    const effective = when === 'now' ? t : anniversaryAt(s.start, t).end;
    s.segments = s.segments.filter((g) => g.start < effective);
    s.segments[s.segments.length - 1].end = effective;
    s.segments.push({ plan: target, start: effective, end: s.cancelAt });
  }

  cancel(t: number, tenant: string, at: 'now' | 'period-end'): void {
    const s = this.sub(tenant);
    const end = at === 'now' ? t : anniversaryAt(s.start, t).end;
    s.cancelAt = end;
    s.segments = s.segments.filter((g, i) => i === 0 || g.start < end);
    s.segments[s.segments.length - 1].end = end;
  }

  quota(tenant: string, feature: string, o: Override): void {
    const m = this.overrides.get(tenant) ?? new Map<string, Override>();
    m.set(feature, { ...m.get(feature), ...o });
    this.overrides.set(tenant, m);
  }

  ingest(events: RefEvent[]): void {
    this.events.push(...events);
  }

  /** The tenant's latest subscription: the one changes and cancellations apply to. */
  private sub(tenant: string): Sub {
    const s = this.subs.get(tenant)?.at(-1);
    if (!s) throw new Error(`reference rater: ${tenant} has no subscription`);
    return s;
  }

  /** The plan's terms for a feature with the tenant's override, or null when the plan lacks it. */
  terms(tenant: string, planId: string, feature: string): Terms | null {
    const pf = this.plan(planId).features[feature];
    if (!pf) return null;
    // Each value is priced on its own entry; a quota override has no feature-level terms to change.
    if (pf.dimension) return { enabled: pf.enabled !== false, included: null, pricing: null, dimension: pf.dimension, prices: pf.prices };
    const o = this.overrides.get(tenant)?.get(feature);
    // A disabled feature includes nothing: its usage is all billable (and priced at 0).
    let included = pf.included === undefined ? new Decimal(0) : pf.included === null ? null : D(pf.included);
    let pricing = pf.overage ?? null;
    if (o?.included !== undefined) included = o.included === null ? null : D(o.included);
    if (o?.unitPrice !== undefined) {
      pricing = { model: 'per_unit', unitPrice: o.unitPrice, minimum: pricing?.minimum, maximum: pricing?.maximum };
    }
    return { enabled: pf.enabled !== false, included, pricing, ...(pf.resetEvery ? { resetEvery: pf.resetEvery } : {}) };
  }

  /** The whole anniversary period (before a cancellation clips it) of the subscription period starting at p.start. */
  private nominalOf(tenant: string, p: Span): Span {
    for (const s of this.subs.get(tenant) ?? []) {
      for (const { period, nominal } of this.periods(s, p.end)) if (period.start === p.start) return nominal;
    }
    throw new Error(`reference rater: no subscription period of ${tenant} starts at ${p.start}`);
  }

  /** The subscription's periods: anniversary periods clipped to [start, cancelAt). */
  private periods(s: Sub, until: number): Array<{ period: Span; nominal: Span }> {
    const out: Array<{ period: Span; nominal: Span }> = [];
    for (let k = 0; ; k++) {
      const nominal = { start: addMonths(s.start, k), end: addMonths(s.start, k + 1) };
      if (nominal.start >= until || (s.cancelAt !== null && nominal.start >= s.cancelAt)) break;
      out.push({ period: { start: nominal.start, end: Math.min(nominal.end, s.cancelAt ?? Infinity) }, nominal });
    }
    return out;
  }

  /**
   * Usage of a feature in a period from every event ingested so far: undefined when no event
   * (no summary), else per the feature's aggregation. `last` takes the latest occurrence,
   * ties to the later ingest.
   */
  usage(tenant: string, feature: string, p: Span): Decimal | undefined {
    const f = this.features.get(feature);
    if (!f) return undefined;
    const evs = this.events.filter((e) => e.tenant === tenant && e.feature === feature && e.occurredAt >= p.start && e.occurredAt < p.end);
    if (evs.length === 0) return undefined;
    const agg = f.aggregation ?? 'sum';
    if (agg === 'count') return new Decimal(evs.length);
    if (agg === 'sum') return evs.reduce((s, e) => s.plus(D(e.quantity)), new Decimal(0));
    // avg: the mean, to the micro-unit, half away from zero.
    if (agg === 'avg') return evs.reduce((s, e) => s.plus(D(e.quantity)), new Decimal(0)).div(evs.length).toDecimalPlaces(6, Decimal.ROUND_HALF_UP);
    if (agg === 'weighted_sum') {
      // Each event raises the level from its second to the period's (clipped) end; the level
      // is averaged over the whole anniversary period, in whole seconds, to the micro-unit.
      const sec = (t: number) => Math.floor(t / 1000);
      const nominal = this.nominalOf(tenant, p);
      let held = new Decimal(0);
      for (const e of evs) held = held.plus(D(e.quantity).times(sec(p.end) - sec(e.occurredAt)));
      return held.div(sec(nominal.end) - sec(nominal.start)).toDecimalPlaces(6, Decimal.ROUND_HALF_UP);
    }
    if (agg === 'max') return evs.reduce((m, e) => Decimal.max(m, D(e.quantity)), D(evs[0].quantity));
    if (agg === 'min') return evs.reduce((m, e) => Decimal.min(m, D(e.quantity)), D(evs[0].quantity));
    if (agg === 'last') {
      let latest = evs[0];
      for (const e of evs) if (e.occurredAt >= latest.occurredAt) latest = e;
      return D(latest.quantity);
    }
    const values = new Set<string>();
    for (const e of evs) {
      const v = f.uniqueBy === 'user_id' ? e.userId : e.metadata?.[f.uniqueBy!];
      if (v !== undefined && v !== null) values.add(v);
    }
    return new Decimal(values.size);
  }

  /**
   * Prices by dimension: a feature's usage in a period per value of the field (events without
   * it under "*"), summed (count: events counted), by a plain walk over the events.
   */
  valueUsage(tenant: string, feature: string, field: string, p: Span): Map<string, Decimal> {
    const out = new Map<string, Decimal>();
    const count = this.features.get(feature)?.aggregation === 'count';
    for (const e of this.events) {
      if (e.tenant !== tenant || e.feature !== feature || e.occurredAt < p.start || e.occurredAt >= p.end) continue;
      const v = e.metadata?.[field] ?? '*';
      out.set(v, (out.get(v) ?? new Decimal(0)).plus(count ? 1 : D(e.quantity)));
    }
    return out;
  }

  /** Prices by dimension: each value rated on its entry, the feature's charge the sum of the rounded ones. */
  private rateValues(tenant: string, feature: string, period: Span, terms: Terms, currency: string): bigint {
    let minor = 0n;
    for (const [v, used] of this.valueUsage(tenant, feature, terms.dimension!, period)) minor += rate(entryTerms(terms, v), used, currency).minor;
    return minor;
  }

  /** A feature's event amounts in a period, by occurrence, ties in the order they were ingested. */
  eventAmounts(tenant: string, feature: string, p: Span): Decimal[] {
    const evs = this.events.filter((e) => e.tenant === tenant && e.feature === feature && e.occurredAt >= p.start && e.occurredAt < p.end);
    // Array.prototype.sort is stable: equal instants keep ingest order.
    return evs.sort((a, b) => a.occurredAt - b.occurredAt).map((e) => D(e.quantity));
  }

  /**
   * What `billing overage` holds at `now` for a tenant's subscription periods started by then,
   * by `${feature}|${periodStart}`: each usage rated on the plan in force at period end (a
   * feature the plan lacks: 0), and a minimum spend owed without usage.
   */
  expectedCharges(tenant: string, now: number): Map<string, bigint> {
    const out = new Map<string, bigint>();
    for (const s of this.subs.get(tenant) ?? []) {
      for (const { period } of this.periods(s, now)) {
        const endPlan = this.planOf(s, period.end - 1);
        for (const [feature, f] of this.features) {
          if (f.type === 'boolean') continue;
          const used = this.usage(tenant, feature, period);
          const plain = this.terms(tenant, endPlan, feature);
          const terms = plain && this.withGranted(tenant, feature, period, this.withRollover(tenant, s, period, endPlan, feature, plain), used ?? new Decimal(0), false);
          const currency = this.plan(endPlan).currency;
          const minor = !terms ? 0n : terms.dimension ? this.rateValues(tenant, feature, period, terms, currency) : this.rateIn(tenant, feature, period, terms, used ?? new Decimal(0), currency).minor;
          if (used !== undefined || minor !== 0n) out.set(`${feature}|${period.start}`, minor);
        }
      }
    }
    return out;
  }

  /** `billing discount add`. */
  discount(tenant: string, d: RefDiscount): void {
    this.discounts.set(tenant, [...(this.discounts.get(tenant) ?? []), { ...d, used: 0 }]);
  }

  /** `billing tax set`: adds the rate, or replaces the one of that name; `--none` (null) drops all. */
  tax(tenant: string, rate: RefTaxRate | null): void {
    if (rate === null) this.taxes.delete(tenant);
    else this.taxes.set(tenant, new Map([...(this.taxes.get(tenant) ?? []), [rate.name, rate]]));
  }

  /** `billing credit grant`. */
  grant(tenant: string, g: RefGrant): void {
    this.grants.set(tenant, [...(this.grants.get(tenant) ?? []), { ...g, uses: new Map() }]);
  }

  /** `billing grant add`. */
  unitGrant(tenant: string, id: string, g: RefUnitGrant): void {
    this.unitGrants.set(tenant, [...(this.unitGrants.get(tenant) ?? []), { ...g, id, drawn: new Map() }]);
  }

  /** How many invoice lines billed one value of a feature priced by dimension. */
  dimensionLines = 0;

  /** How many invoice lines reset windows priced differently from one window per period. */
  windowedLines = 0;

  /** How many invoiced (feature, period) pairs carried units over: how much of a run exercised rollover. */
  carriedPeriods = 0;

  /** How many (grant, period) draws invoices made: how much of a run exercised grants. */
  unitGrantDraws(): number {
    return [...this.unitGrants.values()].flat().reduce((n, g) => n + [...g.drawn.values()].filter((q) => q.gt(0)).length, 0);
  }

  /** `billing grant void` at t. */
  voidUnitGrant(t: number, tenant: string, id: string): void {
    const g = this.unitGrants.get(tenant)?.find((x) => x.id === id);
    if (g && g.voided === undefined) g.voided = t;
  }

  /**
   * Units a period of the tenant takes from its grants of the feature beyond `included`: an
   * invoiced period what it took then; otherwise live grants (effective before the period ends,
   * not expired or voided by its start) by priority, expiry (none last), age, each up to what
   * other periods left. `record`: the invoice of the period takes it.
   */
  private grantedUnits(tenant: string, feature: string, period: Span, included: Decimal | null, used: Decimal, record: boolean): Decimal {
    const grants = (this.unitGrants.get(tenant) ?? []).filter((g) => g.feature === feature);
    if (included === null || grants.length === 0) return new Decimal(0);
    if (this.invoices.get(tenant)?.some((i) => i.start === period.start)) {
      return grants.reduce((sum, g) => sum.plus(g.drawn.get(period.start) ?? 0), new Decimal(0));
    }
    const order = grants
      .map((g, seq) => ({ g, seq }))
      .filter(({ g }) => g.effective < period.end && (g.expires === undefined || g.expires > period.start) && (g.voided === undefined || g.voided > period.start))
      .sort((a, b) => a.g.priority - b.g.priority || (a.g.expires ?? Infinity) - (b.g.expires ?? Infinity) || a.seq - b.seq);
    let want = Decimal.max(0, used.minus(included));
    let total = new Decimal(0);
    for (const { g } of order) {
      let left = D(g.quantity);
      for (const [start, q] of g.drawn) if (start !== period.start) left = left.minus(q);
      const take = Decimal.min(Decimal.max(0, left), want);
      if (take.lte(0)) continue;
      want = want.minus(take);
      total = total.plus(take);
      if (record) g.drawn.set(period.start, take);
    }
    return total;
  }

  /**
   * DESIGN.md §14 rollover: a feature whose plan (at period end) sets `rollover.max` includes
   * min(max, max(0, included − used)) more, where included and used are the previous period's
   * own (same subscription; its plan at its end, the tenant's override; no carried units).
   */
  private withRollover(tenant: string, s: Sub, period: Span, endPlan: string, feature: string, terms: Terms, record = false): Terms {
    const rollover = this.plan(endPlan).features[feature]?.rollover;
    const prev = this.periods(s, period.start).at(-1)?.period;
    if (!rollover || terms.included === null || !prev) return terms;
    const before = this.terms(tenant, this.planOf(s, prev.end - 1), feature);
    if (!before || before.included === null) return terms;
    const unused = before.included.minus(this.usage(tenant, feature, prev) ?? 0);
    const carried = Decimal.min(D(rollover.max), Decimal.max(new Decimal(0), unused));
    if (record && carried.gt(0)) this.carriedPeriods++;
    return { ...terms, included: terms.included.plus(carried) };
  }

  /**
   * DESIGN.md §14 reset windows of a period: from its start every day, 7 days or month (the
   * start's day of month, clamped), the last cut at the period's end.
   */
  resetWindows(period: Span, every: 'day' | 'week' | 'month'): Span[] {
    const out: Span[] = [];
    const at = (k: number) => (every === 'month' ? addMonths(period.start, k) : period.start + k * (every === 'week' ? 7 : 1) * DAY);
    for (let k = 0; at(k) < period.end; k++) out.push({ start: at(k), end: Math.min(at(k + 1), period.end) });
    return out;
  }

  /** With reset windows: Σ over the period's windows of max(0, used in it − included). */
  private windowsBillable(tenant: string, feature: string, period: Span, terms: Terms): Decimal {
    let sum = new Decimal(0);
    if (terms.included === null) return sum;
    for (const w of this.resetWindows(period, terms.resetEvery!)) sum = sum.plus(Decimal.max(0, (this.usage(tenant, feature, w) ?? new Decimal(0)).minus(terms.included)));
    return sum;
  }

  /** A feature's rating in a period: with reset windows, the windows' billable total less what grants cover. */
  private rateIn(tenant: string, feature: string, period: Span, terms: Terms, used: Decimal, currency: string): Rated {
    if (!terms.resetEvery) return rate(terms, used, currency, this.eventAmounts(tenant, feature, period));
    const billable = Decimal.max(0, this.windowsBillable(tenant, feature, period, terms).minus(terms.granted ?? 0));
    return { ...rate({ ...terms, included: new Decimal(0) }, billable, currency), used };
  }

  /** The terms with the period's granted units added to what is included (reset windows: as `granted`). */
  private withGranted(tenant: string, feature: string, period: Span, terms: Terms, used: Decimal, record: boolean): Terms {
    // Percentage has no included units for a grant to top up; prices by dimension take no grants yet.
    if (terms.pricing?.model === 'percentage' || terms.dimension) return terms;
    if (terms.resetEvery) {
      const over = this.windowsBillable(tenant, feature, period, terms);
      return { ...terms, granted: this.grantedUnits(tenant, feature, period, terms.included === null ? null : new Decimal(0), over, record) };
    }
    const extra = this.grantedUnits(tenant, feature, period, terms.included, used, record);
    return extra.isZero() ? terms : { ...terms, included: terms.included!.plus(extra) };
  }

  /**
   * `billing credit-note create` on the tenant's nth invoice for pct % of what is still
   * creditable (its total less earlier notes), rounded down to the minor unit. On an open
   * invoice it takes whole cash steps off the amount due; the rest becomes a prepaid grant.
   * Returns the amount in minor units, or null when nothing was creditable.
   */
  creditNote(t: number, tenant: string, nth: number, pct: number): bigint | null {
    const inv = this.invoices.get(tenant)?.[nth];
    if (!inv) return null;
    const creditable = inv.grossMinor - inv.notesMinor;
    if (creditable <= 0n) return null;
    const amount = (creditable * BigInt(pct)) / 100n;
    if (amount <= 0n) return null;
    const due = inv.totalMinor - inv.noteReductionMinor;
    const step = ROUND_TO_TEN.has(inv.currency) ? 10n : 1n;
    let reduction = amount < due ? amount : due > 0n ? due : 0n;
    reduction -= reduction % step;
    inv.notesMinor += amount;
    inv.noteReductionMinor += reduction;
    if (amount > reduction) this.grant(tenant, { amount: minorToMajor(amount - reduction, inv.currency), currency: inv.currency, priority: 0, effective: t });
    return amount;
  }

  /** Each live instance of the tenant's grants at t in the currency: [grant, instance, until, balance]. */
  private liveCredits(tenant: string, currency: string, t: number) {
    const out: Array<{ g: RefGrant & { uses: Map<number, bigint> }; seq: number; k: number; until: number; balance: bigint }> = [];
    (this.grants.get(tenant) ?? []).forEach((g, seq) => {
      if (g.currency !== currency) return;
      for (let k = 0; ; k++) {
        if (!g.recurring && k > 0) break;
        const from = g.recurring ? addMonths(g.effective, k) : g.effective;
        if (from > t || (k > 0 && from >= (g.expires ?? Infinity))) break;
        const until = Math.min(g.recurring ? addMonths(g.effective, k + 1) : Infinity, g.expires ?? Infinity);
        const balance = toMinor(D(g.amount), currency) - (g.uses.get(k) ?? 0n);
        if (t < until && balance > 0n) out.push({ g, seq, k, until, balance });
      }
    });
    return out.sort((a, b) => a.g.priority - b.g.priority || a.until - b.until || a.seq - b.seq || a.k - b.k);
  }

  /**
   * Prices by dimension: a line per value (a value billed before and used no more at 0),
   * each billing its rating less what was billed for the value.
   */
  private valueLines(tenant: string, feature: string, period: Span, terms: Terms, currency: string, context: 'current' | 'late'): RefLine[] {
    const used = this.valueUsage(tenant, feature, terms.dimension!, period);
    const prefix = `${tenant}|${feature}|${period.start}|`;
    for (const k of this.billed.keys()) if (k.startsWith(prefix) && !used.has(k.slice(prefix.length))) used.set(k.slice(prefix.length), new Decimal(0));
    const out: RefLine[] = [];
    for (const v of [...used.keys()].sort()) {
      const key = prefix + v;
      const before = this.billed.get(key);
      const own = context === 'late' && before ? before.terms : entryTerms(terms, v);
      const r = rate(own, used.get(v)!, currency);
      const amount = r.minor - (before?.minor ?? 0n);
      if (context === 'current' ? r.used.isZero() && amount === 0n && !before : amount === 0n) continue;
      const billableBefore = before ? billableOf(before.terms, before.used) : new Decimal(0);
      const kind = amount < 0n ? 'credit' : context === 'late' ? 'late_usage' : r.billable.isZero() && amount > 0n ? 'minimum' : 'overage';
      this.dimensionLines++;
      out.push({ kind, feature, plan: null, quantity: context === 'late' || amount < 0n ? r.billable.minus(billableBefore) : r.billable, amountMinor: amount, periodStart: period.start });
      this.billed.set(key, { minor: (before?.minor ?? 0n) + amount, used: r.used, terms: own, billable: r.billable });
    }
    return out;
  }

  /** `billing invoice generate --now t`: every ended, uninvoiced period, tenants in id order. */
  generate(now: number): RefInvoice[] {
    const created: RefInvoice[] = [];
    for (const tenant of [...this.subs.keys()].sort()) {
      const done = this.invoices.get(tenant)!;
      for (const s of this.subs.get(tenant)!) {
        for (const { period, nominal } of this.periods(s, now)) {
          if (period.end > now || done.some((i) => i.start === period.start)) continue;
          const inv = this.compose(tenant, s, period, nominal, now);
          done.push(inv);
          created.push(inv);
        }
      }
    }
    return created;
  }

  private compose(tenant: string, s: Sub, period: Span, nominal: Span, now: number): RefInvoice {
    const currency = this.plan(s.segments[0].plan).currency;
    const lines: RefLine[] = [];

    // Base fee in arrears, per plan segment, prorated over the nominal period; trial time is free.
    const paying = { start: Math.max(s.start, s.trialEnd ?? s.start), end: Infinity };
    for (const g of s.segments) {
      const inPeriod = overlap(period, { start: g.start, end: g.end ?? Infinity });
      const billed = inPeriod && overlap(inPeriod, paying);
      if (!billed) continue;
      const share = new Decimal(billed.end - billed.start).div(nominal.end - nominal.start);
      lines.push({
        kind: 'base_fee',
        feature: null,
        plan: g.plan,
        quantity: share.toDecimalPlaces(6, Decimal.ROUND_HALF_UP),
        // Multiply before dividing: a share like 19/28 is not a finite decimal, the product may be.
        amountMinor: toMinor(D(this.plan(g.plan).price).times(billed.end - billed.start).div(nominal.end - nominal.start), currency),
        periodStart: period.start,
      });
    }

    // Usage of this period, rated on the plan in force at its last instant.
    const endPlan = this.planOf(s, period.end - 1);
    this.invoicedTerms.set(`${tenant}|${period.start}`, new Map([...this.features.keys()].map((f) => [f, this.terms(tenant, endPlan, f)])));
    for (const feature of Object.keys(this.plan(endPlan).features).sort()) {
      if (this.features.get(feature)?.type === 'boolean') continue;
      const used = this.usage(tenant, feature, period);
      // What the period draws from unit grants is part of the terms its late usage is priced on.
      const own = this.withRollover(tenant, s, period, endPlan, feature, this.terms(tenant, endPlan, feature)!, true);
      const terms = this.withGranted(tenant, feature, period, own, used ?? new Decimal(0), true);
      this.invoicedTerms.get(`${tenant}|${period.start}`)!.set(feature, terms);
      if (terms.dimension) {
        lines.push(...this.valueLines(tenant, feature, period, terms, currency, 'current'));
        continue;
      }
      const key = `${tenant}|${feature}|${period.start}`;
      const before = this.billed.get(key);
      const r = this.rateIn(tenant, feature, period, terms, used ?? new Decimal(0), currency);
      const amount = r.minor - (before?.minor ?? 0n);
      if (r.used.isZero() && amount === 0n && !before) continue;
      // A windowed line whose billable differs from the whole period's: windows made a difference.
      if (terms.resetEvery && !r.billable.eq(rate({ ...terms, granted: undefined }, r.used, currency).billable)) this.windowedLines++;
      lines.push({
        kind: r.billable.isZero() && amount > 0n ? 'minimum' : 'overage',
        feature,
        plan: null,
        quantity: r.billable,
        amountMinor: amount,
        periodStart: period.start,
      });
      this.billed.set(key, { minor: (before?.minor ?? 0n) + amount, used: r.used, terms, billable: r.billable });
    }

    // Late usage: invoiced earlier periods whose usage changed since they were billed, in this
    // invoice's currency (another currency's wait for an invoice of their own: never converted).
    const earlier = this.invoices.get(tenant)!.filter((i) => i.start < period.start && i.currency === currency).sort((a, b) => a.start - b.start);
    for (const inv of earlier) {
      const span = { start: inv.start, end: inv.end };
      for (const feature of [...this.features.keys()].sort()) {
        const used = this.usage(tenant, feature, span);
        if (used === undefined) continue;
        const key = `${tenant}|${feature}|${inv.start}`;
        const before = this.billed.get(key);
        // Rated on the terms the period was invoiced with (a quota override may have changed since).
        const recorded = this.invoicedTerms.get(`${tenant}|${inv.start}`)!.get(feature) ?? null;
        if (recorded?.dimension) {
          lines.push(...this.valueLines(tenant, feature, span, recorded, currency, 'late'));
          continue;
        }
        const terms = before?.terms ?? recorded;
        if (!terms) continue;
        const r = this.rateIn(tenant, feature, span, terms, used, currency);
        const amount = r.minor - (before?.minor ?? 0n);
        if (amount === 0n) continue;
        const billableBefore = before ? (before.terms.resetEvery ? before.billable : billableOf(before.terms, before.used)) : new Decimal(0);
        lines.push({
          kind: amount < 0n ? 'credit' : 'late_usage',
          feature,
          plan: null,
          quantity: r.billable.minus(billableBefore),
          amountMinor: amount,
          periodStart: inv.start,
        });
        this.billed.set(key, { minor: (before?.minor ?? 0n) + amount, used, terms, billable: r.billable });
      }
    }

    // Minimum commitment of the plan in force at period end, prorated over the paying part of
    // the nominal period like the base fee and rounded once: the shortfall is a true-up line.
    const commitment = this.plan(endPlan).minimumCommitment;
    const payingPart = overlap(period, paying);
    if (commitment !== undefined && payingPart && !D(commitment).isZero()) {
      const committed = toMinor(D(commitment).times(payingPart.end - payingPart.start).div(nominal.end - nominal.start), currency);
      const sofar = lines.reduce((sum, l) => sum + l.amountMinor, 0n);
      if (committed > sofar) lines.push({ kind: 'commitment', feature: null, plan: endPlan, quantity: null, amountMinor: committed - sofar, periodStart: period.start });
    }

    // Discounts that apply: started before the period ends, once / repeating not used up.
    // Percentages (of the lines' sum, or of the named features' usage lines) before fixed
    // amounts, each in the order added, each rounded once, never below zero in all.
    const subtotal = lines.reduce((sum, l) => sum + l.amountMinor, 0n);
    let left = subtotal > 0n ? subtotal : 0n;
    const applies = (this.discounts.get(tenant) ?? []).filter(
      (d) => d.start < period.end && (d.duration === 'forever' || d.used < (d.duration === 'once' ? 1 : d.periods!)),
    );
    for (const d of [...applies.filter((x) => x.percent !== undefined), ...applies.filter((x) => x.percent === undefined)]) {
      if (d.duration !== 'forever') d.used++;
      let base = subtotal;
      if (d.features) {
        base = 0n;
        for (const l of lines) if (l.feature !== null && d.features.includes(l.feature) && l.kind !== 'base_fee') base += l.amountMinor;
      }
      if (base < 0n) base = 0n;
      let want = d.percent !== undefined ? roundHalfAwayToInteger(new Decimal(base.toString()).times(d.percent).div(100)) : toMinor(D(d.amount!), currency);
      if (d.percent === undefined && d.features && want > base) want = base;
      const off = want < left ? want : left;
      left -= off;
      if (off > 0n) lines.push({ kind: 'discount', feature: null, plan: null, quantity: null, amountMinor: -off, periodStart: period.start });
    }

    // Each rate's tax on the discounted amount (never below zero), rounded once; inclusive: shown, not added.
    const discounted = lines.reduce((sum, l) => sum + l.amountMinor, 0n);
    for (const taxRate of this.taxes.get(tenant)?.values() ?? []) {
      const sofar = discounted;
      const base = new Decimal((sofar > 0n ? sofar : 0n).toString()).div(TEN.pow(isoDigits(currency)));
      const tax = toMinor(taxRate.inclusive ? base.minus(base.div(D(taxRate.rate).div(100).plus(1))) : base.times(D(taxRate.rate)).div(100), currency);
      lines.push({ kind: 'tax', feature: null, plan: null, quantity: null, amountMinor: taxRate.inclusive ? 0n : tax, periodStart: period.start });
    }
    const gross = lines.reduce((sum, l) => sum + l.amountMinor, 0n);

    // Prepaid credit live at issue time, in order, never past the total.
    let owed = gross > 0n ? gross : 0n;
    for (const c of this.liveCredits(tenant, currency, now)) {
      if (owed === 0n) break;
      const take = c.balance < owed ? c.balance : owed;
      owed -= take;
      c.g.uses.set(c.k, (c.g.uses.get(c.k) ?? 0n) + take);
      lines.push({ kind: 'prepaid_credit', feature: null, plan: null, quantity: null, amountMinor: -take, periodStart: period.start });
    }

    let total = lines.reduce((sum, l) => sum + l.amountMinor, 0n);
    if (ROUND_TO_TEN.has(currency)) {
      const rounded = roundHalfAwayToInteger(new Decimal(total.toString()).div(10)) * 10n;
      if (rounded !== total) {
        lines.push({ kind: 'rounding', feature: null, plan: null, quantity: null, amountMinor: rounded - total, periodStart: period.start });
        total = rounded;
      }
    }
    return { tenant, start: period.start, end: period.end, currency, lines, grossMinor: gross, totalMinor: total, noteReductionMinor: 0n, notesMinor: 0n };
  }
}
