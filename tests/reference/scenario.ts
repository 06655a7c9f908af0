// Random billing scenarios for the reference-rater property test: a catalog, tenants with
// subscriptions, changes, cancellations, quota overrides, and decimal usage (some late), as one
// timeline of actions that both the real pipeline and the reference replay in order.
import { prng } from '../aggregate-support.js';
import { Decimal } from '../../src/domain/decimal.js';
import {
  ReferenceBilling,
  addMonths,
  anniversaryAt,
  isoDigits,
  type RefCatalog,
  type RefDiscount,
  type RefEvent,
  type RefGrant,
  type RefUnitGrant,
  type RefTaxRate,
  type RefPlan,
  type RefPlanFeature,
  type RefPrice,
  type RefPricing,
  type RefTier,
} from './rater.js';

export type Action =
  | { t: number; kind: 'subscribe'; tenant: string; plan: string; trialDays?: number }
  | { t: number; kind: 'quota'; tenant: string; feature: string; included?: string | null; unitPrice?: string }
  | { t: number; kind: 'change'; tenant: string; plan: string; at?: 'now' | 'period-end' }
  | { t: number; kind: 'cancel'; tenant: string; at: 'now' | 'period-end' }
  | { t: number; kind: 'discount'; tenant: string; discount: RefDiscount }
  | { t: number; kind: 'tax'; tenant: string; rate: RefTaxRate | null }
  | { t: number; kind: 'grant'; tenant: string; grant: RefGrant }
  | { t: number; kind: 'unitGrant'; tenant: string; id: string; grant: RefUnitGrant }
  | { t: number; kind: 'unitGrantVoid'; tenant: string; id: string }
  | { t: number; kind: 'creditNote'; tenant: string; nth: number; pct: number }
  | { t: number; kind: 'usage'; events: RefEvent[] }
  | { t: number; kind: 'catalog'; catalog: RefCatalog }
  | { t: number; kind: 'generate' };

export interface Scenario {
  seed: number;
  catalog: RefCatalog;
  tenants: Array<{ id: string; currency: string }>;
  actions: Action[];
  end: number;
  /** Tenants whose quota override changes mid-life, after periods were invoiced. */
  lateOverrides: string[];
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
export const EPOCH = Date.UTC(2026, 0, 1);
const END = Date.UTC(2026, 4, 20, 6); // 20 May 2026: four to five months of periods
const ORDER: Record<Action['kind'], number> = { catalog: 0, subscribe: 1, quota: 2, discount: 3, tax: 4, grant: 5, unitGrant: 5, unitGrantVoid: 5, change: 6, cancel: 7, usage: 8, generate: 9, creditNote: 10 };

/** Default currencies; RATER_CURRENCIES=USD,JPY narrows them. */
export const DEFAULT_CURRENCIES = ['USD', 'JPY', 'HUF', 'KWD', 'ISK'];

type Rnd = { int(n: number): number; pick<T>(xs: readonly T[]): T; chance(p: number): boolean };

function rng(seed: number): Rnd {
  const next = prng(seed);
  return {
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
    chance: (p) => next() < p,
  };
}

/** A decimal string: whole part below `max`, up to `decimals` fraction digits (fewer at random). */
function decimal(r: Rnd, max: number, decimals: number): string {
  const whole = r.int(max);
  const d = r.int(decimals + 1);
  if (d === 0) return String(whole);
  const frac = String(r.int(10 ** d)).padStart(d, '0');
  return `${whole}.${frac}`;
}

/** A price scaled to the currency: USD cents-ish, JPY/ISK whole-ish, KWD fils-ish, sometimes finer. */
function price(r: Rnd, currency: string, max: number): string {
  const scale = isoDigits(currency) === 0 ? 100 : 1;
  return decimal(r, Math.max(1, max * scale), isoDigits(currency) + r.int(3));
}

function tiers(r: Rnd, currency: string): RefTier[] {
  const n = 1 + r.int(3);
  const out: RefTier[] = [];
  let bound = 0;
  for (let i = 0; i < n; i++) {
    const last = i === n - 1;
    bound += 1 + r.int(40) + (r.chance(0.3) ? Number(`0.${1 + r.int(9)}`) : 0);
    const t: RefTier = { upTo: last ? null : Number(bound.toFixed(1)), unitPrice: price(r, currency, 3) };
    if (r.chance(0.35)) t.flatPrice = price(r, currency, 20);
    out.push(t);
  }
  return out;
}

function pricing(r: Rnd, currency: string): RefPricing {
  const model = r.pick(['per_unit', 'package', 'graduated', 'volume', 'graduated_percentage'] as const);
  let p: RefPricing;
  if (model === 'per_unit') p = { model, unitPrice: price(r, currency, 5) };
  else if (model === 'package') p = { model, size: r.pick([1, 3, 10, 25, '2.5']), packagePrice: price(r, currency, 30) };
  else if (model === 'graduated_percentage') {
    p = { model, tiers: tiers(r, currency).map(({ unitPrice: _, ...t }) => ({ ...t, rate: decimal(r, 30, 3) })) };
  }
  else p = { model, tiers: tiers(r, currency) };
  if (r.chance(0.25)) p.minimum = price(r, currency, 15);
  if (r.chance(0.25)) {
    const floor = Number(p.minimum ?? 0);
    p.maximum = (floor + Number(price(r, currency, 60)) + 1).toFixed(isoDigits(currency));
  }
  return p;
}

/** percentage (DESIGN.md §14) with random terms, each optional one now and then. */
function percentagePricing(r: Rnd, currency: string): RefPricing {
  const p: RefPricing = { model: 'percentage', rate: decimal(r, 6, 3) };
  if (r.chance(0.6)) p.fixedFeePerEvent = price(r, currency, 2);
  if (r.chance(0.35)) p.freeEvents = r.int(4);
  if (r.chance(0.35)) p.freeAmount = decimal(r, 60, 3);
  if (r.chance(0.3)) p.perEventMin = price(r, currency, 2);
  if (r.chance(0.3)) p.perEventMax = new Decimal(p.perEventMin ?? 0).plus(price(r, currency, 3)).toFixed();
  if (r.chance(0.2)) p.minimum = price(r, currency, 15);
  if (r.chance(0.2)) p.maximum = (Number(p.minimum ?? 0) + Number(price(r, currency, 40)) + 1).toFixed(isoDigits(currency));
  return p;
}

/** A feature's terms in a plan; a feature summing amounts is priced by percentage now and then (included 0). */
function planFeature(r: Rnd, currency: string, aggregation?: string): RefPlanFeature {
  if (r.chance(0.08)) return { enabled: false };
  if ((aggregation ?? 'sum') === 'sum' && r.chance(0.3)) return { included: 0, overage: percentagePricing(r, currency) };
  // Prices by dimension (DESIGN.md §14) on sums and counts: some models named, the rest "*".
  if (['sum', 'count'].includes(aggregation ?? 'sum') && r.chance(0.25)) {
    const entry = (match: string): RefPrice => {
      const included = r.pick([0, 0, 1, 5, '2.5', null] as const);
      return included === null ? { match, included } : { match, included, overage: r.chance(0.85) ? pricing(r, currency) : null };
    };
    const named = MODELS.filter(() => r.chance(0.5));
    return { dimension: 'model', prices: [...named.map(entry), entry('*')] };
  }
  const included = r.pick([0, 0, 1, 5, 10, '2.5', '0.75', 20, null] as const);
  if (included === null) return { included: null };
  const pf: RefPlanFeature = { included, overage: r.chance(0.85) ? pricing(r, currency) : null };
  // Rollover (DESIGN.md §14) on monthly plans now and then: a cap below, at or above included.
  if (r.chance(0.3)) pf.rollover = { max: r.pick([1, 3, '2.5', 10, 50] as const) };
  // Or reset windows (DESIGN.md §14): included per day or week inside the monthly period.
  else if (r.chance(0.3) && aggregation !== 'weighted_sum') pf.resetEvery = r.pick(['day', 'week'] as const);
  return pf;
}

/** Values of the `model` field events carry; plans name some of them, 'm9' never. */
const MODELS = ['m0', 'm1', 'm2'];

const AGGREGATIONS = [
  { aggregation: 'sum' },
  { aggregation: 'weighted_sum' },
  { aggregation: 'count' },
  { aggregation: 'avg' },
  { aggregation: 'max' },
  { aggregation: 'min' },
  { aggregation: 'last' },
  { aggregation: 'unique', uniqueBy: 'user_id' },
  { aggregation: 'unique', uniqueBy: 'region' },
] as const;

function catalog(r: Rnd, currencies: string[], ns: string): RefCatalog {
  const nFeatures = 3 + r.int(4);
  const features: RefCatalog['features'] = [];
  for (let i = 0; i < nFeatures; i++) {
    const a = i < AGGREGATIONS.length && r.chance(0.6) ? AGGREGATIONS[i] : r.pick(AGGREGATIONS);
    features.push({ key: `${ns.toUpperCase().replace(/-/g, '_')}F${i}_${a.aggregation.toUpperCase()}`, name: `Feature ${i}`, ...a });
  }
  features.push({ key: `${ns.toUpperCase().replace(/-/g, '_')}VOICE`, name: 'Voice', type: 'boolean' });
  const plans: RefPlan[] = [];
  for (const currency of currencies) {
    for (const tierName of ['lite', 'plus', 'max']) {
      const fs: Record<string, RefPlanFeature> = {};
      for (const f of features) {
        if (f.type === 'boolean') {
          if (r.chance(0.5)) fs[f.key] = { enabled: r.chance(0.5) };
        } else if (r.chance(0.75)) fs[f.key] = planFeature(r, currency, f.aggregation);
      }
      plans.push({
        key: `${ns}${currency.toLowerCase()}-${tierName}`,
        name: `${currency} ${tierName}`,
        currency,
        price: price(r, currency, 100),
        interval: 'month',
        trialDays: r.chance(0.3) ? 1 + r.int(20) : 0,
        ...(r.chance(0.3) ? { minimumCommitment: price(r, currency, 150) } : {}),
        features: fs,
      });
    }
  }
  return { features, plans };
}

/** An instant on a random day in [from, from + days), at a random minute. */
function instant(r: Rnd, from: number, days: number): number {
  return from + r.int(days) * DAY + r.int(24) * HOUR + r.int(60) * 60_000 + r.int(60) * 1000;
}

/** A start on an odd anchor day now and then (29th–31st), so clamping to month ends is exercised. */
function startInstant(r: Rnd): number {
  const time = r.int(24) * HOUR + r.int(60) * 60_000;
  if (r.chance(0.5)) return Date.UTC(2026, 0, r.pick([28, 29, 30, 31])) + time;
  return instant(r, EPOCH, 50);
}

/** `ns` (like "s3_") prefixes every key, so many scenarios share one database. */
export function generateScenario(seed: number, currencies: string[], ns = ''): Scenario {
  const r = rng(seed);
  const scenarioCurrencies = currencies.filter((_, i) => i === seed % currencies.length || r.chance(0.4));
  const cat = catalog(r, scenarioCurrencies, ns);
  const metered = cat.features.filter((f) => f.type !== 'boolean');
  const actions: Action[] = [];
  // Half the scenarios reprice a plan or two mid-way: a new version that existing
  // subscriptions keep off until they change plans.
  const repricings: Array<{ t: number; catalog: RefCatalog }> = [];
  if (r.chance(0.5)) {
    const plans = cat.plans.map((p) => {
      if (!r.chance(0.4)) return p;
      const features = { ...p.features };
      const f = r.pick(metered);
      if (r.chance(0.5)) features[f.key] = planFeature(r, p.currency, f.aggregation);
      return { ...p, price: (Number(p.price) + 1 + r.int(20)).toFixed(isoDigits(p.currency)), features };
    });
    repricings.push({ t: instant(r, Date.UTC(2026, 0, 20), 40), catalog: { features: cat.features, plans } });
  }
  const tenants: Scenario['tenants'] = [];
  // The lifecycle is replayed on a reference as it is drawn, so changes always target another plan.
  for (const c of repricings) actions.push({ t: c.t, kind: 'catalog', catalog: c.catalog });
  const repricedAt = repricings[0]?.t ?? Infinity;
  const nTenants = 1 + r.int(4);
  const lateQuota: Action[] = [];
  const lateOverrides: string[] = [];
  for (let i = 0; i < nTenants; i++) {
    const id = `${ns}t${i}`;
    const currency = i === 0 ? scenarioCurrencies[0] : r.pick(scenarioCurrencies);
    tenants.push({ id, currency });
    const plans = cat.plans.filter((p) => p.currency === currency);
    const start = startInstant(r);
    // This tenant's lifecycle on a reference of its own, the repricing applied when its time comes.
    const life = new ReferenceBilling(cat);
    let repriced = false;
    const upTo = (t: number) => {
      if (t >= repricedAt && !repriced) life.applyCatalog(repricings[0].catalog);
      repriced ||= t >= repricedAt;
    };
    upTo(start);
    const trialDays = r.pick([undefined, undefined, 0, 3, 15, 40]);
    const sub: Action = { t: start, kind: 'subscribe', tenant: id, plan: r.pick(plans).key, ...(trialDays === undefined ? {} : { trialDays }) };
    actions.push(sub);
    life.subscribe(start, id, sub.plan, trialDays);
    if (r.chance(0.3)) {
      const f = r.pick(metered).key;
      const o: Action = { t: start, kind: 'quota', tenant: id, feature: f };
      if (r.chance(0.6)) o.included = r.pick(['0', '3', '7.5', '100', null]);
      if (!('included' in o) || r.chance(0.5)) o.unitPrice = price(r, currency, 4);
      actions.push(o);
    }
    // Now and then an override changes mid-life, after some periods were invoiced: their late
    // usage stays priced on the terms they were invoiced with.
    if (r.chance(0.3)) {
      const o: Action = { t: instant(r, start + 20 * DAY, 80), kind: 'quota', tenant: id, feature: r.pick(metered).key };
      if (r.chance(0.6)) o.included = r.pick(['0', '1.5', '40', null]);
      if (!('included' in o) || r.chance(0.5)) o.unitPrice = price(r, currency, 4);
      lateQuota.push(o);
    }
    // Discounts now and then: percentages and fixed amounts (finer than the currency at times),
    // once / repeating / forever, some on named features, some starting before they are added.
    for (let k = r.chance(0.45) ? 1 + r.int(3) : 0; k > 0; k--) {
      const at = instant(r, start, 100);
      if (at >= END - DAY) continue;
      const duration = r.pick(['once', 'repeating', 'forever'] as const);
      const d: RefDiscount = { duration, start: r.chance(0.5) ? at : at - r.int(40) * DAY };
      if (r.chance(0.5)) d.percent = r.pick(['10', '15', '25', '50', '100', '12.5', '33.333']);
      else {
        const x = price(r, currency, 30);
        d.amount = /[1-9]/.test(x) ? x : '1'; // positive; below the minor unit at times, so it rounds to nothing
      }
      if (duration === 'repeating') d.periods = 1 + r.int(3);
      if (r.chance(0.3)) d.features = [...new Set([r.pick(metered).key, r.pick(metered).key])].sort();
      actions.push({ t: at, kind: 'discount', tenant: id, discount: d });
    }
    // Taxes, prepaid credit and credit notes (DESIGN.md §13) now and then.
    if (r.chance(0.4)) {
      const rate = (): RefTaxRate => ({ name: r.pick(['VAT', 'GST', 'Sales tax']), rate: r.pick(['19', '7.7', '10', '0', '21', '8.875']), inclusive: r.chance(0.3) });
      actions.push({ t: r.chance(0.5) ? start : instant(r, start, 60), kind: 'tax', tenant: id, rate: rate() });
      if (r.chance(0.3)) actions.push({ t: instant(r, start + 30 * DAY, 60), kind: 'tax', tenant: id, rate: r.chance(0.5) ? rate() : null });
    }
    for (let k = r.chance(0.4) ? 1 + r.int(3) : 0; k > 0; k--) {
      const at = instant(r, start, 100);
      if (at >= END - DAY) continue;
      const amount = decimal(r, 60 * (isoDigits(currency) === 0 ? 100 : 1), isoDigits(currency));
      if (!/[1-9]/.test(amount)) continue;
      const effective = r.chance(0.6) ? at : at + r.int(30) * DAY;
      const g: RefGrant = { amount, currency, priority: r.pick([0, 0, 1, 5]), effective };
      if (r.chance(0.3)) g.expires = effective + (1 + r.int(60)) * DAY;
      if (r.chance(0.25)) g.recurring = 'monthly';
      actions.push({ t: at, kind: 'grant', tenant: id, grant: g });
    }
    // Grants of units (DESIGN.md §14) now and then, effective when added or later (an earlier
    // start would reprice periods already closed), some expiring, some voided later.
    for (let k = 0, n = r.chance(0.4) ? 1 + r.int(3) : 0; k < n; k++) {
      const at = instant(r, start, 100);
      if (at >= END - DAY) continue;
      const effective = r.chance(0.6) ? at : at + r.int(30) * DAY;
      const g: RefUnitGrant = { feature: r.pick(metered).key, quantity: decimal(r, 80, 3), priority: r.pick([0, 0, 1, 3]), effective };
      if (!/[1-9]/.test(g.quantity)) g.quantity = '5';
      if (r.chance(0.4)) g.expires = effective + (1 + r.int(60)) * DAY;
      const gid = `ug_${id}_${k}`;
      actions.push({ t: at, kind: 'unitGrant', tenant: id, id: gid, grant: g });
      if (r.chance(0.2)) {
        const voidAt = instant(r, at + DAY, 60);
        if (voidAt < END - DAY) actions.push({ t: voidAt, kind: 'unitGrantVoid', tenant: id, id: gid });
      }
    }
    for (let k = r.chance(0.35) ? 1 + r.int(2) : 0; k > 0; k--) {
      actions.push({ t: instant(r, Date.UTC(2026, 1, 2), 100), kind: 'creditNote', tenant: id, nth: r.int(4), pct: r.pick([10, 33, 50, 100]) });
    }

    // Changes, then maybe a cancellation, at increasing instants.
    let t = start;
    const nChanges = r.int(3);
    for (let c = 0; c < nChanges; c++) {
      t = instant(r, t + DAY, 35);
      if (t > END - 20 * DAY) break;
      upTo(t);
      // Another plan, or the current plan's newer version.
      const current = life.planAt(id, t);
      const target = r.pick(plans.filter((p) => life.latestVersion(p.key) !== current)).key;
      const at = r.pick([undefined, undefined, undefined, 'now', 'period-end'] as const);
      actions.push({ t, kind: 'change', tenant: id, plan: target, ...(at ? { at } : {}) });
      life.change(t, id, target, at);
    }
    let cancelAt: number | null = null;
    for (const q of lateQuota.splice(0)) {
      if (q.t >= END - DAY) continue;
      actions.push(q);
      if (!lateOverrides.includes(id)) lateOverrides.push(id);
    }
    if (r.chance(0.4)) {
      t = instant(r, t + DAY, 40);
      if (t < END - 5 * DAY) {
        const at = r.pick(['now', 'period-end'] as const);
        actions.push({ t, kind: 'cancel', tenant: id, at });
        cancelAt = at === 'now' ? t : anniversaryAt(start, t).end;
      }
    }

    const usage = (from: number, endAt: number | null) => {
      const lifeEnd = Math.min(endAt ?? END, END);
      // Usage: per feature a few events a month; some before the start or after the end (never
      // billed), some exactly on a period boundary (the later period's) or on the instant of an
      // earlier event (a `last` tie: the later ingest wins); most on time, some weeks late.
      for (const f of metered) {
        if (r.chance(0.2)) continue;
        const seen: number[] = [];
        const n = r.int(Math.max(1, Math.round((lifeEnd - from) / DAY / 5)));
        for (let e = 0; e < n; e++) {
          let occurred = from + r.int(Math.max(1, lifeEnd - from));
          if (r.chance(0.04)) occurred = from - 1 - r.int(5 * DAY);
          if (r.chance(0.04) && endAt !== null && endAt < END) occurred = endAt + r.int(Math.max(1, END - endAt));
          if (r.chance(0.05)) occurred = addMonths(from, r.int(5));
          if (r.chance(0.03) && endAt !== null) occurred = endAt;
          // A period's first and last millisecond (weighted_sum holds them all or nothing).
          if (r.chance(0.03)) occurred = addMonths(from, r.int(5)) - (r.chance(0.5) ? 1 : 0);
          if (r.chance(0.05) && seen.length > 0) occurred = r.pick(seen);
          if (occurred < EPOCH || occurred >= END) continue;
          seen.push(occurred);
          // Ingested at the next midnight (on time), or 10–50 days on (late), never after the end.
          const onTime = Math.ceil((occurred + 1) / DAY) * DAY;
          const ingestAt = Math.min(r.chance(0.25) ? onTime + (10 + r.int(40)) * DAY : onTime, END);
          const ev: RefEvent = { tenant: id, feature: f.key, quantity: f.aggregation === 'count' ? '1' : decimal(r, 40, 3), occurredAt: occurred };
          // The field of prices by dimension: a model, or none now and then ("*").
          if ((f.aggregation === 'sum' || f.aggregation === 'count') && r.chance(0.8)) ev.metadata = { model: r.pick([...MODELS, 'm9']) };
          if (f.aggregation === 'unique') {
            if (r.chance(0.85)) ev.userId = `u${r.int(12)}`;
            if (r.chance(0.85)) ev.metadata = { region: `r${r.int(6)}` };
          }
          actions.push({ t: Math.max(ingestAt, occurred), kind: 'usage', events: [ev] });
        }
      }
    };
    usage(start, cancelAt);

    // Some canceled tenants subscribe again later, now and then in another currency: late
    // usage of the old subscription's periods then waits for an invoice in their currency.
    if (cancelAt !== null && cancelAt < END - 10 * DAY && r.chance(0.4)) {
      const again = cancelAt + HOUR + r.int(20) * DAY;
      if (again < END - 5 * DAY) {
        upTo(again);
        const currency2 = r.chance(0.7) ? currency : r.pick(scenarioCurrencies);
        const plan = r.pick(cat.plans.filter((p) => p.currency === currency2)).key;
        actions.push({ t: again, kind: 'subscribe', tenant: id, plan });
        life.subscribe(again, id, plan);
        usage(again, null);
      }
    }
  }

  // Invoices twice a month (so some late events land after their period's invoice) and at the end.
  for (let m = 1; m <= 4; m++) {
    actions.push({ t: Date.UTC(2026, m, 1, 0, 30), kind: 'generate' });
    actions.push({ t: Date.UTC(2026, m, 16, 3, 0), kind: 'generate' });
  }
  actions.push({ t: END, kind: 'generate' });

  // One usage action per instant: ingest receives each day's events together.
  const merged: Action[] = [];
  actions.sort((a, b) => a.t - b.t || ORDER[a.kind] - ORDER[b.kind]);
  for (const a of actions) {
    const prev = merged[merged.length - 1];
    if (a.kind === 'usage' && prev?.kind === 'usage' && prev.t === a.t) prev.events.push(...a.events);
    else merged.push(a);
  }
  return { seed, catalog: cat, tenants, actions: merged, end: END, lateOverrides };
}

/** The scenario in a few lines, for a failure report. */
export function describeScenario(s: Scenario): string {
  const iso = (t: number) => new Date(t).toISOString().replace(':00.000Z', 'Z');
  const lines = [`catalog: ${JSON.stringify(s.catalog)}`];
  for (const a of s.actions) {
    if (a.kind === 'usage') {
      lines.push(`${iso(a.t)} usage ${a.events.map((e) => `${e.tenant}/${e.feature} ${e.quantity}@${iso(e.occurredAt)}${e.userId ? ` u=${e.userId}` : ''}${e.metadata ? ` ${JSON.stringify(e.metadata)}` : ''}`).join(', ')}`);
    } else {
      const { t, kind, ...rest } = a;
      lines.push(`${iso(t)} ${kind} ${JSON.stringify(rest)}`);
    }
  }
  return lines.join('\n');
}

