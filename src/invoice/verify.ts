import type { PlanFeature } from '../domain/catalog.js';
import { dec, isDecimalString, type Decimal } from '../domain/decimal.js';
import { cashRoundingMinor, cashStepMinor, roundMoney } from '../domain/money.js';
import { toIso } from '../domain/period.js';
import { microToDecimal } from '../domain/quantity.js';
import type { Db } from '../storage/db.js';
import { prorate, prorationQuantity } from '../rate/base-fee.js';
import { invoiceTotals } from '../rate/totals.js';
import { discountAmount } from '../rate/discounts.js';
import { listInvoices } from './repository.js';
import { INVOICE_STATUSES, LINE_KINDS, USAGE_KINDS, type BaseFeeDetails, type DiscountDetails, type Invoice, type InvoiceLine, type UsageDetails } from './types.js';
import { dueMinusBilled } from '../rate/usage-lines.js';
import { formatInvoiceNumber } from './numbering.js';

export interface Violation {
  check: string;
  tenantId?: string;
  invoice?: string;
  line?: number;
  message: string;
}

export interface VerifyReport {
  ok: boolean;
  invoices: number;
  lines: number;
  violations: Violation[];
}

const INT_RE = /^-?\d+$/;

/**
 * Money invariants over the whole database (`billing verify`): totals are the sum of their
 * lines, each line recomputes from its stored quantity and snapshot, one current invoice per
 * subscription period, no usage billed twice or beyond what was recorded, gapless numbers.
 * Read-only.
 */
export async function verifyInvoices(db: Db): Promise<VerifyReport> {
  const out: Violation[] = [];
  const tenants = (await db.knex('invoices').distinct('tenant_id').orderBy('tenant_id')).map((r) => r.tenant_id as string);
  let invoices = 0;
  let lines = 0;
  const numbers: string[] = [];
  for (const tenantId of tenants) {
    const list = await listInvoices(db, { tenantId });
    invoices += list.length;
    for (const inv of list) {
      lines += inv.lines.length;
      numbers.push(inv.number);
      checkInvoice(inv, out);
    }
    checkOnePerPeriod(list, out);
    await checkUsageBilling(db, tenantId, list, out);
    await checkLateTerms(db, tenantId, list, out);
  }
  await checkNumbers(db, numbers, out);
  return { ok: out.length === 0, invoices, lines, violations: out };
}

function checkInvoice(inv: Invoice, out: Violation[]): void {
  const v = (check: string, message: string, line?: number) =>
    out.push({ check, tenantId: inv.tenantId, invoice: inv.number, ...(line === undefined ? {} : { line }), message });
  if (!INVOICE_STATUSES.includes(inv.status)) v('status', `unknown status "${inv.status}"`);
  const totals = [inv.subtotal, inv.discountTotal, inv.taxTotal, inv.total, inv.creditsApplied, inv.amountDue];
  if (!totals.every((s) => moneyOk(s, inv.currency)) || !INT_RE.test(inv.totalMinor)) {
    v('decimal', `subtotal "${inv.subtotal}", discount_total "${inv.discountTotal}", tax_total "${inv.taxTotal}", total "${inv.total}", credits_applied "${inv.creditsApplied}", amount_due "${inv.amountDue}" or total_minor "${inv.totalMinor}" is not a ${inv.currency} amount`);
    return;
  }
  let sum = dec(0);
  let minor = 0n;
  let linesOk = true;
  for (const l of inv.lines) {
    if (!checkLine(inv, l, (check, message) => v(check, message, l.lineNo))) linesOk = false;
    if (isDecimalString(l.amount)) sum = sum.plus(l.amount);
    if (INT_RE.test(l.amountMinor)) minor += BigInt(l.amountMinor);
  }
  if (!linesOk) return;
  checkTotals(inv, sum, v);
  checkDiscountSum(inv, v);
  if (roundMoney(inv.total, inv.currency).minor !== inv.totalMinor) v('minor', `total_minor ${inv.totalMinor} does not match total ${inv.total}`);
  if (minor.toString() !== inv.totalMinor) v('minor', `total_minor ${inv.totalMinor} but line amounts in minor units sum to ${minor}`);
  if (dec(inv.total).isNegative() && !inv.lines.some((l) => l.kind === 'credit')) v('sign', `total ${inv.total} is negative without a credit line`);
  checkCashRounding(inv, v);
}

/**
 * The §13 totals against the lines (rate/totals.ts): subtotal = the non-discount lines,
 * discountTotal = what the discount lines take off, total = subtotal − discountTotal + taxes =
 * the lines' sum, amountDue = total − credits. No taxes or credits exist yet: both are zero.
 */
function checkTotals(inv: Invoice, sum: Decimal, v: (check: string, message: string) => void): void {
  const want = invoiceTotals(inv.lines, inv.currency);
  if (!sum.eq(inv.total)) v('total', `total ${inv.total} but the lines sum to ${sum.toFixed()}`);
  if (!dec(inv.subtotal).eq(want.subtotal)) v('total', `subtotal ${inv.subtotal} but the lines other than discounts sum to ${want.subtotal}`);
  if (!dec(inv.discountTotal).eq(want.discountTotal)) v('total', `discount_total ${inv.discountTotal} but the discount lines take off ${want.discountTotal}`);
  if (!dec(inv.taxTotal).isZero()) v('total', `tax_total ${inv.taxTotal} but no taxes exist`);
  if (!dec(inv.creditsApplied).isZero()) v('total', `credits_applied ${inv.creditsApplied} but no credits exist`);
  if (!dec(inv.subtotal).minus(inv.discountTotal).plus(inv.taxTotal).eq(inv.total)) {
    v('total', `total ${inv.total} is not subtotal ${inv.subtotal} − discount_total ${inv.discountTotal} + tax_total ${inv.taxTotal}`);
  }
  if (!dec(inv.total).minus(inv.creditsApplied).eq(inv.amountDue)) v('total', `amount_due ${inv.amountDue} is not total ${inv.total} − credits_applied ${inv.creditsApplied}`);
}

/**
 * BHD JOD KWD OMR TND are collected in multiples of 10 minor units: the total must be one,
 * through at most one rounding line equal to what the rule computes from the other lines.
 * Other currencies never carry a rounding line.
 */
function checkCashRounding(inv: Invoice, v: (check: string, message: string, line?: number) => void): void {
  const step = cashStepMinor(inv.currency);
  const rounding = inv.lines.filter((l) => l.kind === 'rounding');
  if (step === 1) {
    for (const l of rounding) v('rounding', `${inv.currency} is collected to the minor unit: a rounding line does not belong here`, l.lineNo);
    return;
  }
  if (BigInt(inv.totalMinor) % BigInt(step) !== 0n) {
    v('rounding', `total ${inv.total} ${inv.currency} is not collectible: ${inv.currency} is collected in multiples of ${step} minor units`);
  }
  if (rounding.length > 1) v('rounding', `${rounding.length} rounding lines (${rounding.map((l) => `#${l.lineNo}`).join(', ')}); at most one is allowed`);
  const others = inv.lines.filter((l) => l.kind !== 'rounding').reduce((s, l) => s + BigInt(l.amountMinor), 0n);
  const want = cashRoundingMinor(others, inv.currency);
  const got = rounding.reduce((s, l) => s + BigInt(l.amountMinor), 0n).toString();
  if (got !== want) {
    v('rounding', `rounding of ${got} minor units but the other lines total ${others} minor units, which round by ${want}`, rounding[0]?.lineNo);
  }
  for (const l of rounding) {
    const m = BigInt(l.amountMinor);
    if (m === 0n || (m < 0n ? -m : m) * 2n > BigInt(step)) v('rounding', `rounding line of ${l.amountMinor} minor units is not a nonzero adjustment of at most half a step (${step / 2})`, l.lineNo);
  }
}

function moneyOk(s: string, currency: string): boolean {
  return typeof s === 'string' && isDecimalString(s) && roundMoney(s, currency).amount === s;
}

/** Returns false when the line is too broken for totals to mean anything. */
function checkLine(inv: Invoice, l: InvoiceLine, v: (check: string, message: string) => void): boolean {
  if (!LINE_KINDS.includes(l.kind)) {
    v('kind', `unknown line kind "${l.kind}"`);
    return false;
  }
  const decimals = [l.amount, l.amountPrecise, ...(l.quantity === null ? [] : [l.quantity]), ...(l.unitPrice === null ? [] : [l.unitPrice])];
  if (!decimals.every((s) => typeof s === 'string' && isDecimalString(s)) || !INT_RE.test(l.amountMinor)) {
    v('decimal', `a value is not a decimal string (amount "${l.amount}", precise "${l.amountPrecise}", quantity "${l.quantity}", unit price "${l.unitPrice}", minor "${l.amountMinor}")`);
    return false;
  }
  if (!moneyOk(l.amount, inv.currency)) v('decimal', `amount "${l.amount}" is not rounded to ${inv.currency}'s minor unit`);
  if (roundMoney(l.amount, inv.currency).minor !== l.amountMinor) v('minor', `amount_minor ${l.amountMinor} does not match amount ${l.amount}`);
  if (roundMoney(l.amountPrecise, inv.currency).amount !== l.amount) {
    v('rounding', `amount ${l.amount} is not amount_precise ${l.amountPrecise} rounded once`);
  }
  if (l.kind === 'rounding') return true; // checked against the whole invoice (checkCashRounding)
  const amt = dec(l.amount);
  if (l.kind === 'credit' || l.kind === 'discount' ? !amt.isNegative() || amt.isZero() : amt.isNegative()) {
    v('sign', `${l.kind} line has amount ${l.amount}`);
  }
  if (l.kind === 'base_fee') checkBaseFee(inv, l, v);
  else if (l.kind === 'discount') checkDiscountLine(inv, l, v);
  else checkUsageLine(inv, l, v);
  return true;
}

function checkBaseFee(inv: Invoice, l: InvoiceLine, v: (check: string, message: string) => void): void {
  const d = l.details as BaseFeeDetails | null;
  const snap = l.priceSnapshot as { price?: string } | null;
  if (!d || !d.nominal || l.unitPrice === null || snap?.price !== l.unitPrice) {
    v('recompute', 'base fee line lacks its proration details or price snapshot');
    return;
  }
  const billedMs = d.to - d.from;
  const nominalMs = d.nominal.end - d.nominal.start;
  const again = prorate(l.unitPrice, billedMs, nominalMs, inv.currency);
  if (again.amount !== l.amount || again.precise !== l.amountPrecise) {
    v('recompute', `base fee ${l.amount} (precise ${l.amountPrecise}) but ${l.unitPrice} × ${billedMs / 1000}/${nominalMs / 1000} s is ${again.amount} (${again.precise})`);
  }
  if (l.quantity !== prorationQuantity(billedMs, nominalMs)) v('recompute', `base fee quantity ${l.quantity} is not the billed share ${prorationQuantity(billedMs, nominalMs)}`);
  if (d.from < inv.period.start || d.to > inv.period.end) v('period', `base fee covers ${toIso(d.from)}..${toIso(d.to)}, outside the invoice period`);
}

/** A discount line recomputes from its details: its rate or amount, its base and what was left before it. */
function checkDiscountLine(inv: Invoice, l: InvoiceLine, v: (check: string, message: string) => void): void {
  const d = l.details as DiscountDetails | null;
  const oneOf = d && (d.percent === null) !== (d.fixed === null) && [d.percent ?? d.fixed, d.base, d.before].every((s) => typeof s === 'string' && isDecimalString(s));
  if (!d || !oneOf || typeof d.discountId !== 'string') {
    v('recompute', 'discount line lacks its discount id, rate or amount, base or the amount left before it');
    return;
  }
  const again = discountAmount(d, inv.currency);
  if (!dec(again).neg().eq(l.amount) || l.amountPrecise !== l.amount) {
    v('recompute', `discount ${d.discountId} ${l.amount} but ${d.percent !== null ? `${d.percent}% of ${d.base}` : `${d.fixed}`} with ${d.before} left gives -${again}`);
  }
}

/**
 * Discounts come after the lines they discount and never take the amount below zero: together
 * they are at most the (positive part of the) other lines before cash rounding.
 */
function checkDiscountSum(inv: Invoice, v: (check: string, message: string, line?: number) => void): void {
  const discounts = inv.lines.filter((l) => l.kind === 'discount');
  if (discounts.length === 0) return;
  const charged = inv.lines.filter((l) => l.kind !== 'discount' && l.kind !== 'rounding').reduce((s, l) => s.plus(l.amount), dec(0));
  const off = discounts.reduce((s, l) => s.minus(l.amount), dec(0));
  if (off.gt(charged.isNegative() ? 0 : charged)) v('discount', `discounts take ${off.toFixed()} off lines that charge ${charged.toFixed()}: below zero`, discounts[0].lineNo);
}

function checkUsageLine(inv: Invoice, l: InvoiceLine, v: (check: string, message: string) => void): void {
  const d = l.details as UsageDetails | null;
  const snap = l.priceSnapshot as PlanFeature | null;
  if (!d || !snap || !l.featureKey || !isDecimalString(d.usedTotal ?? '') || !isDecimalString(d.billedBefore ?? '')) {
    v('recompute', `${l.kind} line lacks its usage details or price snapshot`);
    return;
  }
  let again: ReturnType<typeof dueMinusBilled>;
  try {
    again = dueMinusBilled(snap, d.usedTotal, d.billedBefore, inv.currency);
  } catch (e) {
    v('recompute', `the line's price snapshot cannot be rated: ${(e as Error).message}`);
    return;
  }
  if (again.amount !== l.amount || again.precise !== l.amountPrecise) {
    v('recompute', `${l.featureKey} ${l.kind} ${l.amount} (precise ${l.amountPrecise}) but rating ${d.usedTotal} on its snapshot, less ${d.billedBefore} billed before, gives ${again.amount} (${again.precise})`);
  }
}

function checkOnePerPeriod(list: Invoice[], out: Violation[]): void {
  const seen = new Map<string, Invoice>();
  for (const inv of list) {
    if (inv.status === 'void') continue;
    const key = `${inv.subscriptionId}|${inv.period.start}`;
    const first = seen.get(key);
    if (first) {
      out.push({
        check: 'duplicate',
        tenantId: inv.tenantId,
        invoice: inv.number,
        message: `${first.number} and ${inv.number} both bill subscription ${inv.subscriptionId} for the period starting ${toIso(inv.period.start)}`,
      });
    } else seen.set(key, inv);
  }
}

/**
 * Usage lines for one (tenant, feature, period) across current invoices: together they never
 * bill more than the rating of the latest usage on the latest snapshot (less is pending late
 * usage, or a period voided and not yet reissued), and that usage never exceeds what is
 * recorded for the period.
 */
async function checkUsageBilling(db: Db, tenantId: string, list: Invoice[], out: Violation[]): Promise<void> {
  const groups = new Map<string, Array<{ inv: Invoice; line: InvoiceLine }>>();
  for (const inv of [...list].sort((a, b) => numberOrder(a.number) - numberOrder(b.number))) {
    if (inv.status === 'void') continue;
    for (const line of inv.lines) {
      if (!USAGE_KINDS.includes(line.kind) || !line.featureKey) continue;
      const key = `${line.featureKey}|${line.period.start}`;
      groups.set(key, [...(groups.get(key) ?? []), { inv, line }]);
    }
  }
  if (groups.size === 0) return;
  const summaries = new Map<string, string>();
  for (const s of await db.knex('usage_summaries')
    .select('feature_key', 'period_start', db.knex.raw('CAST(quantity AS TEXT) AS q'))
    .where('tenant_id', tenantId)) {
    summaries.set(`${s.feature_key}|${Number(s.period_start)}`, s.q);
  }
  const aggregation = new Map<string, string>(
    (await db.knex('features').select('key', 'aggregation')).map((f) => [f.key as string, f.aggregation as string]),
  );
  for (const [key, entries] of groups) {
    const latest = entries[entries.length - 1];
    const d = latest.line.details as UsageDetails | null;
    const snap = latest.line.priceSnapshot as PlanFeature | null;
    const feature = latest.line.featureKey!;
    if (!d || !snap || !isDecimalString(d.usedTotal ?? '') || !entries.every((e) => isDecimalString(e.line.amount))) continue;
    const billed = entries.reduce((sum, e) => sum.plus(e.line.amount), dec(0));
    let due: string;
    try {
      due = dueMinusBilled(snap, d.usedTotal, '0', latest.inv.currency).rated.amount;
    } catch {
      continue; // reported by the line check
    }
    if (billed.gt(due)) {
      const where = entries.map((e) => `${e.inv.number}#${e.line.lineNo} ${e.line.amount}`).join(', ');
      out.push({
        check: 'double_billing',
        tenantId,
        invoice: latest.inv.number,
        line: latest.line.lineNo,
        message: `${feature} for the period starting ${toIso(latest.line.period.start)}: ${billed.toFixed()} billed (${where}) but ${d.usedTotal} is rated at ${due}`,
      });
    }
    if (aggregation.get(feature) === 'last') continue; // a gauge may legitimately be revised down
    const recorded = summaries.get(key);
    const recordedUsed = recorded === undefined ? dec(0) : microToDecimal(recorded);
    if (dec(d.usedTotal).gt(recordedUsed)) {
      out.push({
        check: 'overbilled_usage',
        tenantId,
        invoice: latest.inv.number,
        line: latest.line.lineNo,
        message: `${feature} for the period starting ${toIso(latest.line.period.start)} was billed on ${d.usedTotal} but only ${recordedUsed.toFixed()} is recorded`,
      });
    }
  }
}

/** JSON with object keys sorted, so equal terms compare equal whatever order they were stored in. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v ?? null);
}

/**
 * Late usage and credits for an earlier period are priced on the terms that period was
 * invoiced with (`invoices.feature_terms`): a late line's snapshot must be the recorded
 * terms of its feature on an invoice of that period (a voided one counts: the line may
 * predate the void). Invoices from before terms were recorded are not checked.
 */
async function checkLateTerms(db: Db, tenantId: string, list: Invoice[], out: Violation[]): Promise<void> {
  const recorded = new Map<number, Array<Record<string, unknown>>>();
  for (const r of await db.knex('invoices').select('period_start', 'feature_terms').where('tenant_id', tenantId).whereNotNull('feature_terms')) {
    let terms: unknown;
    try {
      terms = JSON.parse(r.feature_terms);
    } catch {
      terms = null;
    }
    const start = Number(r.period_start);
    if (!terms || typeof terms !== 'object') {
      out.push({ check: 'late_terms', tenantId, message: `an invoice for the period starting ${toIso(start)} has unreadable feature_terms` });
      continue;
    }
    recorded.set(start, [...(recorded.get(start) ?? []), terms as Record<string, unknown>]);
  }
  for (const inv of list) {
    if (inv.status === 'void') continue;
    for (const l of inv.lines) {
      if ((l.kind !== 'late_usage' && l.kind !== 'credit') || !l.featureKey || l.period.start === inv.period.start) continue;
      const candidates = recorded.get(l.period.start);
      if (!candidates) continue;
      const snap = canonical(l.priceSnapshot);
      if (candidates.some((t) => t[l.featureKey!] !== undefined && canonical(t[l.featureKey!]) === snap)) continue;
      out.push({
        check: 'late_terms',
        tenantId,
        invoice: inv.number,
        line: l.lineNo,
        message: `${l.kind} ${l.featureKey} for the period starting ${toIso(l.period.start)} is priced on terms that no invoice of that period recorded`,
      });
    }
  }
}

function numberOrder(n: string): number {
  const m = /^INV-(\d+)$/.exec(n);
  return m ? Number(m[1]) : Number.MAX_SAFE_INTEGER;
}

async function checkNumbers(db: Db, numbers: string[], out: Violation[]): Promise<void> {
  const counter = await db.knex('invoice_counters').where('issuer', 'default').first('last_number');
  const last = counter ? Number(counter.last_number) : 0;
  const seen = new Set<string>();
  for (const n of numbers) {
    if (seen.has(n)) out.push({ check: 'numbering', invoice: n, message: `number ${n} is used twice` });
    seen.add(n);
  }
  const missing: string[] = [];
  for (let i = 1; i <= last; i++) if (!seen.has(formatInvoiceNumber(i))) missing.push(formatInvoiceNumber(i));
  if (missing.length > 0) {
    const shown = missing.slice(0, 10).join(', ') + (missing.length > 10 ? `, … (${missing.length} in all)` : '');
    out.push({ check: 'numbering', message: `numbers must have no gaps; missing: ${shown}` });
  }
  if (seen.size > last) out.push({ check: 'numbering', message: `${seen.size} invoice numbers exist but the counter is at ${last}` });
}
