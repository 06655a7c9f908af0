import type { Aggregation, PercentagePricing, PlanFeature } from '../domain/catalog.js';
import { dimensionUsage, eventAmounts } from '../aggregate/usage.js';
import { byDimension, valueTerms } from '../rate/dimension.js';
import { Decimal, dec, isDecimalString } from '../domain/decimal.js';
import { cashRoundingMinor, cashStepMinor, formatMoney, minorToMajor, roundMoney } from '../domain/money.js';
import { toIso } from '../domain/period.js';
import { microToDecimal } from '../domain/quantity.js';
import type { Db } from '../storage/db.js';
import { billingPeriodOf, usageValue } from '../aggregate/value.js';
import { listSubscriptions } from '../subscriptions/repository.js';
import { loadFeature } from '../catalog/repository.js';
import { prorate, prorationQuantity } from '../rate/base-fee.js';
import { invoiceTotals } from '../rate/totals.js';
import { discountAmount } from '../rate/discounts.js';
import { commitmentAmount } from '../rate/commitment.js';
import { ownTax, ownTaxBase, taxOn } from '../rate/taxes.js';
import { listInvoices } from './repository.js';
import { INVOICE_STATUSES, LINE_KINDS, SUBTOTAL_KINDS, USAGE_KINDS, type BaseFeeDetails, type CommitmentDetails, type CreditDetails, type DiscountDetails, type TaxDetails, type Invoice, type InvoiceLine, type UsageDetails } from './types.js';
import { dueMinusBilled } from '../rate/usage-lines.js';
import { resetWindows } from '../rate/reset.js';
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
    const prior = priorLines(list);
    for (const inv of list) {
      lines += inv.lines.length;
      numbers.push(inv.number);
      checkInvoice(inv, out, prior.get(inv.id) ?? []);
    }
    checkOnePerPeriod(list, out);
    await checkUsageBilling(db, tenantId, list, out);
    await checkLateTerms(db, tenantId, list, out);
    await checkCreditNotes(db, tenantId, list, out);
  }
  for (const tenantId of (await db.knex('credit_grants').distinct('tenant_id').orderBy('tenant_id')).map((r) => r.tenant_id as string)) {
    await checkCreditLedger(db, tenantId, out);
  }
  for (const tenantId of (await db.knex('unit_grants').distinct('tenant_id').orderBy('tenant_id')).map((r) => r.tenant_id as string)) {
    await checkUnitGrants(db, tenantId, out);
  }
  await checkNumbers(db, numbers, out);
  await checkWebhookOutbox(db, out);
  return { ok: out.length === 0, invoices, lines, violations: out };
}

/**
 * Per invoice, the lines of the earlier threshold invoices of its subscription period (not
 * void): its discounts, taxes and commitment are the period's so far less theirs.
 */
function priorLines(list: Invoice[]): Map<string, InvoiceLine[]> {
  const out = new Map<string, InvoiceLine[]>();
  const byPeriod = new Map<string, Invoice[]>();
  for (const inv of [...list].sort((a, b) => numberOrder(a.number) - numberOrder(b.number))) {
    if (inv.status === 'void') continue;
    const key = `${inv.subscriptionId}|${inv.period.start}`;
    const earlier = byPeriod.get(key) ?? [];
    out.set(inv.id, earlier.filter((e) => e.billingReason === 'threshold').flatMap((e) => e.lines));
    byPeriod.set(key, [...earlier, inv]);
  }
  return out;
}

/** A threshold invoice bills its own period's usage before the period ends, and nothing else. */
function checkThresholdInvoice(inv: Invoice, v: (check: string, message: string, line?: number) => void): void {
  if (inv.billingReason !== 'threshold') return;
  if (inv.issuedAt >= inv.period.end) v('threshold', `threshold invoice issued ${toIso(inv.issuedAt)}, after its period ended ${toIso(inv.period.end)}`);
  for (const l of inv.lines) {
    if (l.kind === 'base_fee' || l.kind === 'commitment' || l.kind === 'late_usage' || l.period.start !== inv.period.start) {
      v('threshold', `a threshold invoice bills only its period's usage so far, not a ${l.kind} line for the period starting ${toIso(l.period.start)}`, l.lineNo);
    }
  }
}

function checkInvoice(inv: Invoice, out: Violation[], prior: InvoiceLine[]): void {
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
    if (!checkLine(inv, l, prior, (check, message) => v(check, message, l.lineNo))) linesOk = false;
    if (isDecimalString(l.amount)) sum = sum.plus(l.amount);
    if (INT_RE.test(l.amountMinor)) minor += BigInt(l.amountMinor);
  }
  if (!linesOk) return;
  checkTotals(inv, v);
  checkThresholdInvoice(inv, v);
  checkDiscountSum(inv, v);
  checkOrder(inv, v);
  if (roundMoney(sum, inv.currency).minor !== inv.totalMinor) v('minor', `total_minor ${inv.totalMinor} does not match the lines' sum ${sum.toFixed()}`);
  if (minor.toString() !== inv.totalMinor) v('minor', `total_minor ${inv.totalMinor} but line amounts in minor units sum to ${minor}`);
  if (dec(inv.total).isNegative() && !inv.lines.some((l) => l.kind === 'credit')) v('sign', `total ${inv.total} is negative without a credit line`);
  checkCashRounding(inv, v);
}

/**
 * The §13 totals against the lines (rate/totals.ts): subtotal = base fee, usage and commitment
 * lines; discountTotal = what the discount lines take off; taxTotal = every rate's tax; total =
 * subtotal − discountTotal + exclusive taxes; creditsApplied = the prepaid credit lines, at most
 * the total; amountDue = total − creditsApplied (+ cash rounding) − credit notes, never below 0
 * unless the total is. (The lines sum to the amount due before credit notes: total_minor.)
 */
function checkTotals(inv: Invoice, v: (check: string, message: string) => void): void {
  const notes = inv.creditNotes.reduce((s, c) => s.plus(c.amount), dec(0));
  const dueReduction = inv.creditNotes.reduce((s, c) => s.plus(c.dueReduction), dec(0));
  const want = invoiceTotals(inv.lines, inv.currency, dueReduction.toFixed());
  const field = (name: string, got: string, expected: string, what: string) => {
    if (!dec(got).eq(expected)) v('total', `${name} ${got} but ${what} ${expected}`);
  };
  field('subtotal', inv.subtotal, want.subtotal, 'the base fee, usage and commitment lines sum to');
  field('discount_total', inv.discountTotal, want.discountTotal, 'the discount lines take off');
  field('tax_total', inv.taxTotal, want.taxTotal, 'the tax lines add up to');
  field('total', inv.total, want.total, 'subtotal − discounts + exclusive taxes is');
  field('credits_applied', inv.creditsApplied, want.creditsApplied, 'the prepaid credit lines take off');
  field('amount_due', inv.amountDue, want.amountDue, 'total − credits applied (+ rounding) − credit notes is');
  if (dec(inv.creditsApplied).gt(0) && dec(inv.creditsApplied).gt(dec(inv.total).isNegative() ? 0 : inv.total)) {
    v('credits', `credits applied ${inv.creditsApplied} exceed the total ${inv.total}`);
  }
  if (dec(inv.amountDue).isNegative() && !dec(inv.total).isNegative()) v('total', `amount_due ${inv.amountDue} is negative`);
  if (notes.gt(dec(inv.total).isNegative() ? 0 : inv.total)) v('credit_note', `credit notes ${formatMoney(notes, inv.currency)} exceed the invoice total ${inv.total}`);
}

/** §13's order: subtotal lines, then discounts, taxes, prepaid credits, cash rounding. */
function checkOrder(inv: Invoice, v: (check: string, message: string, line?: number) => void): void {
  const stage = (k: string) => (SUBTOTAL_KINDS.includes(k as never) ? 0 : ['discount', 'tax', 'prepaid_credit', 'rounding'].indexOf(k) + 1);
  let last = 0;
  for (const l of inv.lines) {
    const s = stage(l.kind);
    if (s < last) v('order', `${l.kind} line after a later stage of the invoice (subtotal, discounts, taxes, credits, rounding)`, l.lineNo);
    last = Math.max(last, s);
  }
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
    v('rounding', `amount due ${minorToMajor(inv.totalMinor, inv.currency)} ${inv.currency} is not collectible: ${inv.currency} is collected in multiples of ${step} minor units`);
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
function checkLine(inv: Invoice, l: InvoiceLine, prior: InvoiceLine[], v: (check: string, message: string) => void): boolean {
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
  const negative = l.kind === 'credit' || l.kind === 'discount' || l.kind === 'prepaid_credit';
  if (negative ? !amt.isNegative() || amt.isZero() : amt.isNegative()) {
    v('sign', `${l.kind} line has amount ${l.amount}`);
  }
  if (l.kind === 'base_fee') checkBaseFee(inv, l, v);
  else if (l.kind === 'discount') checkDiscountLine(inv, l, prior, v);
  else if (l.kind === 'commitment') checkCommitmentLine(inv, l, prior, v);
  else if (l.kind === 'tax') checkTaxLine(inv, l, prior, v);
  else if (l.kind === 'prepaid_credit') {
    const d = l.details as CreditDetails | null;
    if (!d || typeof d.grantId !== 'string' || !isDecimalString(d.balanceBefore ?? '')) v('recompute', 'prepaid credit line lacks its grant or the balance before it');
    else if (dec(l.amount).neg().gt(d.balanceBefore)) v('credits', `prepaid credit ${l.amount} exceeds what grant ${d.grantId} had left (${d.balanceBefore})`);
  } else checkUsageLine(inv, l, v);
  return true;
}

/** A commitment line tops the subtotal lines before it up to the prorated commitment. */
function checkCommitmentLine(inv: Invoice, l: InvoiceLine, prior: InvoiceLine[], v: (check: string, message: string) => void): void {
  const d = l.details as CommitmentDetails | null;
  if (!d || ![d.commitment, d.billedSeconds, d.periodSeconds, d.subtotal].every((x) => typeof x === 'string' && isDecimalString(x))) {
    v('recompute', 'commitment line lacks its commitment, proration or the subtotal it tops up');
    return;
  }
  const before = [...prior, ...inv.lines.filter((x) => x.lineNo < l.lineNo)].filter((x) => SUBTOTAL_KINDS.includes(x.kind)).reduce((s, x) => s.plus(x.amount), dec(0));
  if (!before.eq(d.subtotal)) v('recompute', `commitment tops up ${d.subtotal} but the lines before it sum to ${before.toFixed()}`);
  const again = commitmentAmount(d, inv.currency);
  if (!dec(again).eq(l.amount)) v('recompute', `commitment ${l.amount} but ${d.commitment} × ${d.billedSeconds}/${d.periodSeconds} s less ${d.subtotal} gives ${again}`);
}

/**
 * A tax line: its rate on the discounted amount (subtotal and discount lines, never below 0),
 * rounded once; after threshold invoices of the period, on the period's so far, less what they added.
 */
function checkTaxLine(inv: Invoice, l: InvoiceLine, prior: InvoiceLine[], v: (check: string, message: string) => void): void {
  const d = l.details as TaxDetails | null;
  if (!d || typeof d.name !== 'string' || typeof d.inclusive !== 'boolean' || ![d.rate, d.base, d.tax].every((x) => typeof x === 'string' && isDecimalString(x))) {
    v('recompute', 'tax line lacks its name, rate, base or tax');
    return;
  }
  const discounted = [...prior, ...inv.lines].filter((x) => SUBTOTAL_KINDS.includes(x.kind) || x.kind === 'discount').reduce((s, x) => s.plus(x.amount), dec(0));
  const base = formatMoney(Decimal.max(discounted, 0), inv.currency);
  if (!dec(d.base).eq(base)) v('recompute', `${d.name} is computed on ${d.base} but the discounted amount is ${base}`);
  const tax = taxOn(d.base, d, inv.currency);
  if (!dec(tax).eq(d.tax)) v('recompute', `${d.name} ${d.rate}% of ${d.base}${d.inclusive ? ' (inclusive)' : ''} is ${tax}, not ${d.tax}`);
  const same = prior.filter((x) => x.kind === 'tax' && (x.details as TaxDetails | null)?.name === d.name).map((x) => x.details as TaxDetails);
  const billedBefore = same.reduce((s, x) => s.plus(ownTax(x)), dec(0));
  const baseBefore = same.reduce((s, x) => s.plus(ownTaxBase(x)), dec(0));
  if (!billedBefore.eq(d.billedBefore ?? 0) || !baseBefore.eq(d.baseBefore ?? 0)) {
    v('threshold', `${d.name} says ${d.billedBefore ?? 0} was added on ${d.baseBefore ?? 0} earlier this period, but the period's threshold invoices added ${billedBefore.toFixed()} on ${baseBefore.toFixed()}`);
  }
  const amount = d.inclusive ? dec(0) : ownTax(d);
  if (!amount.eq(l.amount)) v('recompute', `${d.name} line amount ${l.amount} but ${d.inclusive ? 'an inclusive tax adds 0' : `its tax is ${amount.toFixed()}`}`);
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
function checkDiscountLine(inv: Invoice, l: InvoiceLine, prior: InvoiceLine[], v: (check: string, message: string) => void): void {
  const d = l.details as DiscountDetails | null;
  const oneOf = d && (d.percent === null) !== (d.fixed === null) && [d.percent ?? d.fixed, d.base, d.before].every((s) => typeof s === 'string' && isDecimalString(s));
  if (!d || !oneOf || typeof d.discountId !== 'string') {
    v('recompute', 'discount line lacks its discount id, rate or amount, base or the amount left before it');
    return;
  }
  const billedBefore = prior
    .filter((x) => x.kind === 'discount' && (x.details as DiscountDetails | null)?.discountId === d.discountId)
    .reduce((s, x) => s.minus(x.amount), dec(0));
  if (!billedBefore.eq(d.billedBefore ?? 0)) v('threshold', `discount ${d.discountId} says ${d.billedBefore ?? 0} was taken off earlier this period, but the period's threshold invoices took ${billedBefore.toFixed()}`);
  const again = dec(discountAmount(d, inv.currency)).minus(billedBefore);
  if (!again.neg().eq(l.amount) || l.amountPrecise !== l.amount) {
    v('recompute', `discount ${d.discountId} ${l.amount} but ${d.percent !== null ? `${d.percent}% of ${d.base}` : `${d.fixed}`} with ${d.before} left gives -${formatMoney(again, inv.currency)}`);
  }
}

/**
 * Discounts come after the lines they discount and never take the amount below zero: together
 * they are at most the (positive part of the) other lines before cash rounding.
 */
function checkDiscountSum(inv: Invoice, v: (check: string, message: string, line?: number) => void): void {
  const discounts = inv.lines.filter((l) => l.kind === 'discount');
  if (discounts.length === 0) return;
  const charged = inv.lines.filter((l) => SUBTOTAL_KINDS.includes(l.kind)).reduce((s, l) => s.plus(l.amount), dec(0));
  const off = discounts.reduce((s, l) => s.minus(l.amount), dec(0));
  if (off.gt(charged.isNegative() ? 0 : charged)) v('discount', `discounts take ${off.toFixed()} off lines that charge ${charged.toFixed()}: below zero`, discounts[0].lineNo);
}

/** A windowed line's windows as recorded (its billable is re-derived from them). */
function windowsOf(d: UsageDetails) {
  return Array.isArray(d.windows) ? { used: d.windows, granted: d.granted ?? '0' } : undefined;
}

function checkUsageLine(inv: Invoice, l: InvoiceLine, v: (check: string, message: string) => void): void {
  const d = l.details as UsageDetails | null;
  const snap = l.priceSnapshot as PlanFeature | null;
  if (!d || !snap || !l.featureKey || !isDecimalString(d.usedTotal ?? '') || !isDecimalString(d.billedBefore ?? '')) {
    v('recompute', `${l.kind} line lacks its usage details or price snapshot`);
    return;
  }
  if (snap.overage?.model === 'percentage') {
    checkPercentageLine(inv, l, d, snap.overage, v);
    return;
  }
  let again: ReturnType<typeof dueMinusBilled>;
  try {
    again = dueMinusBilled(snap, d.usedTotal, d.billedBefore, inv.currency, undefined, windowsOf(d));
  } catch (e) {
    v('recompute', `the line's price snapshot cannot be rated: ${(e as Error).message}`);
    return;
  }
  // What the line says it carried or cut into windows must be what its terms allow.
  if (d.carried !== undefined && !(snap.rollover && isDecimalString(d.carried) && dec(d.carried).lte(snap.rollover.max))) {
    v('recompute', `${l.featureKey} ${l.kind} carries ${d.carried} over, more than its terms' rollover allows (${snap.rollover?.max ?? 'none'})`);
  }
  if (Array.isArray(d.windows) && (!snap.resetEvery || d.windows.length !== resetWindows(l.period, snap.resetEvery).length)) {
    v('recompute', `${l.featureKey} ${l.kind} has ${d.windows.length} reset windows, but its period has ${snap.resetEvery ? resetWindows(l.period, snap.resetEvery).length : 'none'}`);
  }
  if (again.amount !== l.amount || again.precise !== l.amountPrecise) {
    v('recompute', `${l.featureKey} ${l.kind} ${l.amount} (precise ${l.amountPrecise}) but rating ${d.usedTotal} on its snapshot, less ${d.billedBefore} billed before, gives ${again.amount} (${again.precise})`);
  }
}

/**
 * A percentage line is priced from its period's events, which a line does not carry (they are
 * re-read by checkUsageBilling while they exist): here its stored price lines must hold
 * together: each line's arithmetic, the rate and fee of the snapshot, no more paying amount
 * than was used, their sum the due amount, rounded once, less what was billed before.
 */
function checkPercentageLine(inv: Invoice, l: InvoiceLine, d: UsageDetails, p: PercentagePricing, v: (check: string, message: string) => void): void {
  const bad = (m: string) => v('recompute', `${l.featureKey} ${l.kind}: ${m}`);
  let sum = dec(0);
  for (const t of d.tiers ?? []) {
    const again = dec(t.quantity).times(t.unitPrice ?? 0).plus(t.flatPrice ?? 0);
    if (!again.eq(t.amount)) bad(`price line ${t.ref} ${t.amount} is not ${t.quantity} × ${t.unitPrice ?? 0} + ${t.flatPrice ?? 0}`);
    if (t.ref === 'percentage' && !dec(t.unitPrice ?? -1).eq(dec(p.rate).div(100))) bad(`price line ${t.ref} charges ${t.unitPrice}, not ${p.rate}%`);
    if (t.ref === 'percentage' && dec(t.quantity).gt(d.usedTotal)) bad(`${t.quantity} pays the rate but only ${d.usedTotal} was used`);
    if (t.ref === 'event-fee' && !dec(t.unitPrice ?? -1).eq(p.fixedFeePerEvent ?? 0)) bad(`price line ${t.ref} charges ${t.unitPrice} per event, not ${p.fixedFeePerEvent}`);
    if (t.ref === 'event-minimum' && dec(t.amount).isNegative()) bad('a per-event minimum takes money off');
    if (t.ref === 'event-maximum' && dec(t.amount).gt(0)) bad('a per-event maximum adds money');
    sum = sum.plus(t.amount);
  }
  if (!sum.eq(d.duePrecise)) bad(`its price lines sum to ${sum.toFixed()}, not the due ${d.duePrecise}`);
  const due = roundMoney(d.duePrecise, inv.currency);
  if (due.amount !== d.dueAmount) bad(`due ${d.duePrecise} rounds to ${due.amount}, not ${d.dueAmount}`);
  const amount = formatMoney(dec(d.dueAmount).minus(d.billedBefore), inv.currency);
  if (amount !== l.amount) bad(`${l.amount} but the due ${d.dueAmount} less ${d.billedBefore} billed before is ${amount}`);
}

function checkOnePerPeriod(list: Invoice[], out: Violation[]): void {
  const seen = new Map<string, Invoice>();
  for (const inv of list) {
    if (inv.status === 'void' || inv.billingReason === 'threshold') continue;
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
      // A feature priced by dimension is billed per value (DESIGN.md §14).
      const key = `${line.featureKey}|${line.period.start}${line.dimensionValue !== undefined ? `|${line.dimensionValue}` : ''}`;
      groups.set(key, [...(groups.get(key) ?? []), { inv, line }]);
    }
  }
  if (groups.size === 0) return;
  const aggregation = new Map<string, Aggregation>(
    (await db.knex('features').select('key', 'aggregation')).map((f) => [f.key as string, f.aggregation as Aggregation]),
  );
  const subs = await listSubscriptions(db.knex, tenantId);
  const summaries = new Map<string, string>();
  for (const s of await db.knex('usage_summaries')
    .select('feature_key', 'period_start', 'subscription_id', 'event_count', db.knex.raw('CAST(quantity AS TEXT) AS q'))
    .where('tenant_id', tenantId)) {
    // The recorded value, as every reader makes it (value.ts: avg and weighted_sum store an accumulator).
    const start = Number(s.period_start);
    const owner = s.subscription_id === null ? null : (subs.find((x) => x.id === s.subscription_id) ?? null);
    const value = usageValue(aggregation.get(s.feature_key) ?? 'sum', s.q, Number(s.event_count), billingPeriodOf({ start, subscription: owner }));
    summaries.set(`${s.feature_key}|${start}`, value!);
  }
  for (const [key, entries] of groups) {
    const latest = entries[entries.length - 1];
    const d = latest.line.details as UsageDetails | null;
    const snap = latest.line.priceSnapshot as PlanFeature | null;
    const feature = latest.line.featureKey!;
    if (!d || !snap || !isDecimalString(d.usedTotal ?? '') || !entries.every((e) => isDecimalString(e.line.amount))) continue;
    const billed = entries.reduce((sum, e) => sum.plus(e.line.amount), dec(0));
    let due: string;
    try {
      if (snap.overage?.model === 'percentage') {
        // Re-derived from the period's events while they add up to what was billed on (not
        // past retention, no late usage pending); otherwise the line's own due stands.
        const events = (await eventAmounts(db.knex, tenantId, feature, latest.line.period)).map((m) => microToDecimal(m));
        const used = events.reduce((s, e) => s.plus(e), dec(0));
        due = d.dueAmount;
        if (used.eq(d.usedTotal)) {
          const again = dueMinusBilled(snap, d.usedTotal, '0', latest.inv.currency, events.map((e) => e.toFixed())).rated;
          if (again.amount !== d.dueAmount || again.amountPrecise !== d.duePrecise) {
            out.push({
              check: 'recompute',
              tenantId,
              invoice: latest.inv.number,
              line: latest.line.lineNo,
              message: `${feature} for the period starting ${toIso(latest.line.period.start)}: its events rate at ${again.amount} (${again.amountPrecise}), the line says ${d.dueAmount} (${d.duePrecise})`,
            });
          }
          due = again.amount;
        }
      } else due = dueMinusBilled(snap, d.usedTotal, '0', latest.inv.currency, undefined, windowsOf(d)).rated.amount;
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
        message: `${latest.line.dimensionValue === undefined ? feature : `${feature} (${latest.line.dimensionValue})`} for the period starting ${toIso(latest.line.period.start)}: ${billed.toFixed()} billed (${where}) but ${d.usedTotal} is rated at ${due}`,
      });
    }
    // A gauge, a low-water mark or an average may legitimately be revised down.
    if (['last', 'min', 'avg'].includes(aggregation.get(feature) ?? '')) continue;
    const value = latest.line.dimensionValue;
    const recorded = value === undefined ? summaries.get(key) : await valueRecorded(db, tenantId, feature, d, value, latest.line.period, summaries.get(`${feature}|${latest.line.period.start}`));
    const what = value === undefined ? feature : `${feature} (${value})`;
    const recordedUsed = recorded === undefined ? dec(0) : microToDecimal(recorded);
    if (dec(d.usedTotal).gt(recordedUsed)) {
      out.push({
        check: 'overbilled_usage',
        tenantId,
        invoice: latest.inv.number,
        line: latest.line.lineNo,
        message: `${what} for the period starting ${toIso(latest.line.period.start)} was billed on ${d.usedTotal} but only ${recordedUsed.toFixed()} is recorded`,
      });
    }
  }
}

/**
 * A value's recorded usage (micro-units) of a feature priced by dimension: its events' while
 * the period's events per value add up to the summary, else (retention deleted them) the
 * feature's summary, all a value can have used.
 */
async function valueRecorded(db: Db, tenantId: string, featureKey: string, d: UsageDetails, value: string, period: { start: number; end: number }, summary: string | undefined): Promise<string | undefined> {
  const feature = await loadFeature(db.knex, featureKey);
  if (!feature || !d.dimension || summary === undefined) return summary;
  const values = await dimensionUsage(db, tenantId, feature, d.dimension, period);
  if ([...values.values()].reduce((s, m) => s + BigInt(m), 0n) !== BigInt(summary)) return summary;
  return values.get(value) ?? '0';
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
      // A value of a feature priced by dimension: the terms of its entry in the recorded ones.
      const termsOf = (t: Record<string, unknown>) => {
        const pf = t[l.featureKey!] as PlanFeature | undefined;
        return pf && l.dimensionValue !== undefined && byDimension(pf) ? valueTerms(pf, l.dimensionValue) : pf;
      };
      if (candidates.some((t) => termsOf(t) !== undefined && canonical(termsOf(t)) === snap)) continue;
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

/**
 * Each credit note splits its amount into what it took off the amount due and what it credited
 * (a prepaid grant of exactly that, or a refund); the invoice's stored sum of notes agrees.
 */
async function checkCreditNotes(db: Db, tenantId: string, list: Invoice[], out: Violation[]): Promise<void> {
  const rows = await db.knex('credit_notes').where('tenant_id', tenantId).orderBy('number');
  if (rows.length === 0) return;
  const grants = new Map((await db.knex('credit_grants').where({ tenant_id: tenantId, source: 'credit_note' })).map((g) => [g.id as string, g]));
  const byId = new Map(list.map((i) => [i.id, i]));
  for (const r of rows) {
    const inv = byId.get(r.invoice_id);
    const v = (message: string) => out.push({ check: 'credit_note', invoice: inv?.number ?? r.invoice_id, message: `${r.number} ${message}` });
    if (![r.amount, r.due_reduction, r.credited, r.tax_amount].every((x) => isDecimalString(x ?? ''))) {
      v('has a field that is not a decimal amount');
      continue;
    }
    if (dec(r.amount).lte(0) || dec(r.due_reduction).isNegative() || dec(r.credited).isNegative()) v(`amount ${r.amount}, due reduction ${r.due_reduction} and credited ${r.credited} must be positive`);
    if (!dec(r.due_reduction).plus(r.credited).eq(r.amount)) v(`amount ${r.amount} is not due reduction ${r.due_reduction} + credited ${r.credited}`);
    const grant = r.grant_id ? grants.get(r.grant_id) : undefined;
    const refund = r.refund === true || r.refund === 1;
    if (dec(r.credited).gt(0) && !refund && (!grant || !dec(grant.amount).eq(r.credited))) v(`credited ${r.credited} but no prepaid grant of that amount records it`);
  }
  const sums = new Map<string, Decimal>();
  for (const r of rows) sums.set(r.invoice_id, (sums.get(r.invoice_id) ?? dec(0)).plus(isDecimalString(r.amount ?? '') ? r.amount : 0));
  const stored = new Map(
    (await db.knex('invoices').where('tenant_id', tenantId).whereIn('id', [...sums.keys()]).select('id', 'credit_note_total')).map((r) => [r.id as string, (r.credit_note_total ?? null) as string | null]),
  );
  for (const [invoiceId, sum] of sums) {
    const inv = byId.get(invoiceId);
    if (!inv) continue;
    const total = stored.get(invoiceId) ?? null;
    if (total === null || !dec(total).eq(sum)) {
      out.push({ check: 'credit_note', invoice: inv.number, message: `credit_note_total ${total} but its credit notes add up to ${formatMoney(sum, inv.currency)}` });
    }
  }
}

/** No grant instance has given more than it held (the balance never goes negative). */
async function checkCreditLedger(db: Db, tenantId: string, out: Violation[]): Promise<void> {
  const grants = await db.knex('credit_grants').where('tenant_id', tenantId);
  const uses = await db.knex('credit_uses as u')
    .join('invoices as i', function () {
      this.on('i.tenant_id', 'u.tenant_id').andOn('i.id', 'u.invoice_id');
    })
    .where('u.tenant_id', tenantId)
    .whereNot('i.status', 'void')
    .select('u.grant_id', 'u.instance', 'u.amount');
  const used = new Map<string, Decimal>();
  for (const u of uses) {
    const key = `${u.grant_id}#${u.instance}`;
    used.set(key, (used.get(key) ?? dec(0)).plus(isDecimalString(u.amount ?? '') ? u.amount : 0));
  }
  for (const [key, sum] of used) {
    const g = grants.find((x) => x.id === key.split('#')[0]);
    if (!g) out.push({ check: 'credits', message: `tenant ${tenantId}: invoices used grant ${key} that does not exist` });
    else if (!isDecimalString(g.amount ?? '') || sum.gt(g.amount)) {
      out.push({ check: 'credits', message: `tenant ${tenantId}: grant ${key} gave ${formatMoney(sum, g.currency)} of ${g.amount}: its balance went negative` });
    }
  }
}

/** No grant of units gave more than its quantity (what non-void invoices drew from it). */
async function checkUnitGrants(db: Db, tenantId: string, out: Violation[]): Promise<void> {
  const grants = new Map((await db.knex('unit_grants').where('tenant_id', tenantId)).map((g) => [g.id as string, g]));
  const uses = await db.knex('grant_uses as u')
    .join('invoices as i', function () {
      this.on('i.tenant_id', 'u.tenant_id').andOn('i.id', 'u.invoice_id');
    })
    .where('u.tenant_id', tenantId)
    .whereNot('i.status', 'void')
    .select('u.grant_id', 'u.quantity', 'i.number');
  const used = new Map<string, Decimal>();
  for (const u of uses) {
    if (!isDecimalString(u.quantity ?? '') || dec(u.quantity).lte(0)) {
      out.push({ check: 'grants', invoice: u.number, message: `tenant ${tenantId}: draw "${u.quantity}" from unit grant ${u.grant_id} is not a positive quantity` });
      continue;
    }
    used.set(u.grant_id, (used.get(u.grant_id) ?? dec(0)).plus(u.quantity));
  }
  for (const [id, sum] of used) {
    const g = grants.get(id);
    if (!g) out.push({ check: 'grants', message: `tenant ${tenantId}: invoices drew on unit grant ${id} that does not exist` });
    else if (!isDecimalString(g.quantity ?? '') || sum.gt(g.quantity)) {
      out.push({ check: 'grants', message: `tenant ${tenantId}: unit grant ${id} gave ${sum.toFixed()} of ${g.quantity} ${g.feature_key}: more than its quantity` });
    }
  }
}

/**
 * The webhook outbox: each stored body is the event it claims to be (a redelivery sends it
 * as stored), every delivery has its event, and no invoice was announced as created twice.
 */
async function checkWebhookOutbox(db: Db, out: Violation[]): Promise<void> {
  if (!(await db.knex.schema.hasTable('webhook_events'))) return;
  const created = new Set<string>();
  let after = '';
  for (;;) {
    const page = await db.knex('webhook_events').where('id', '>', after).orderBy('id').limit(1000).select('id', 'type', 'tenant_id', 'created_at', 'body');
    if (page.length === 0) break;
    for (const e of page) {
      let body: any;
      try {
        body = JSON.parse(e.body);
      } catch {
        body = null;
      }
      if (!body || body.id !== e.id || body.type !== e.type || body.created !== Math.floor(Number(e.created_at) / 1000) || !('data' in body)) {
        out.push({ check: 'webhooks', tenantId: e.tenant_id ?? undefined, message: `event ${e.id}: its stored body is not {id, type, created, data} of this event` });
        continue;
      }
      if (e.type === 'invoice.created') {
        const key = `${e.tenant_id}|${body.data?.id}`;
        if (created.has(key)) out.push({ check: 'webhooks', tenantId: e.tenant_id ?? undefined, message: `invoice ${body.data?.number ?? body.data?.id}: invoice.created was written twice` });
        created.add(key);
      }
    }
    after = page[page.length - 1].id;
  }
  const orphans = await db.knex('webhook_deliveries as d')
    .leftJoin('webhook_events as v', 'v.id', 'd.event_id')
    .where((w) => w.whereNull('v.id').orWhereRaw('COALESCE(d.tenant_id, ?) <> COALESCE(v.tenant_id, ?)', ['', '']))
    .select('d.id')
    .limit(10);
  for (const o of orphans) out.push({ check: 'webhooks', message: `delivery ${o.id}: its event is missing or belongs to another tenant` });
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
