import type { RatedLine } from '../rate/lines.js';
import type { AppliedDiscount, AppliedTax } from '../rate/totals.js';
import { displayInstant, periodToJson, toIso, type Instant, type Period } from '../domain/period.js';

export type InvoiceStatus = 'draft' | 'open' | 'paid' | 'void' | 'uncollectible';
export const INVOICE_STATUSES: InvoiceStatus[] = ['draft', 'open', 'paid', 'void', 'uncollectible'];

export type { BaseFeeDetails, CommitmentDetails, CreditDetails, DiscountDetails, TaxDetails, LineKind, RatedLine, UsageDetails } from '../rate/lines.js';
export { LINE_KINDS, SUBTOTAL_KINDS, USAGE_KINDS } from '../rate/lines.js';

export interface InvoiceLine extends RatedLine {
  lineNo: number;
}

export interface InvoiceCreditNote {
  number: string;
  amount: string;
  dueReduction: string;
}

export interface Invoice {
  id: string;
  number: string;
  tenantId: string;
  subscriptionId: string;
  period: Period;
  status: InvoiceStatus;
  currency: string;
  /** DESIGN.md §13 totals (rate/totals.ts): total = subtotal − discountTotal + taxes; amountDue = total − creditsApplied. */
  subtotal: string;
  discounts: AppliedDiscount[];
  discountTotal: string;
  taxes: AppliedTax[];
  taxTotal: string;
  total: string;
  /** The sum of the lines' minor units: what is collected. */
  totalMinor: string;
  creditsApplied: string;
  /** Credit notes against it, oldest first: gross amount and what it took off the amount due. */
  creditNotes: InvoiceCreditNote[];
  amountDue: string;
  issuedAt: Instant;
  dueAt: Instant;
  finalizedAt: Instant | null;
  voidedAt: Instant | null;
  voidReason: string | null;
  paidAt: Instant | null;
  paymentRef: string | null;
  uncollectibleAt: Instant | null;
  supersedes: string | null;
  /** `period`: the period's final invoice; `threshold`: one issued before the period ended (DESIGN.md §15). */
  billingReason: BillingReason;
  createdAt: Instant;
  lines: InvoiceLine[];
}

export type BillingReason = 'period' | 'threshold';

/** What `generateInvoices` reports per invoice (lines are counted, not listed). */
export type InvoiceSummary = Omit<Invoice, 'lines'> & { lineCount: number };

export function summarize(inv: Invoice): InvoiceSummary {
  const { lines, ...head } = inv;
  return { ...head, lineCount: lines.length };
}

const iso = (t: Instant | null) => (t === null ? null : displayInstant(t));

/** The one JSON shape of an invoice (list, show, export, generate --json): ISO instants, decimal strings. */
export interface TotalsRow {
  /** subtotal | discount | tax | total | credits_applied | credit_note | amount_due */
  kind: string;
  label: string;
  /** Signed as it acts on the amount due: discounts, credits and credit notes negative. */
  amount: string;
}

const neg = (x: string) => (/^-/.test(x) ? x.slice(1) : /^0(\.0+)?$/.test(x) ? x : `-${x}`);
const zero = (x: string) => /^-?0(\.0+)?$/.test(x);

/**
 * The totals block every rendering shows (DESIGN.md §13): subtotal, each discount, each tax,
 * total, credits applied, each credit note, amount due. Rows that would only repeat the total
 * are left out, so a plain invoice shows just its total.
 */
export function invoiceTotalsRows(inv: Pick<Invoice, 'subtotal' | 'discounts' | 'taxes' | 'total' | 'creditsApplied' | 'creditNotes' | 'amountDue'>): TotalsRow[] {
  const rows: TotalsRow[] = [];
  if (inv.discounts.length > 0 || inv.taxes.length > 0) rows.push({ kind: 'subtotal', label: 'Subtotal', amount: inv.subtotal });
  for (const d of inv.discounts) rows.push({ kind: 'discount', label: d.description, amount: neg(d.amount) });
  for (const t of inv.taxes) rows.push({ kind: 'tax', label: `${t.name} ${t.rate}%${t.inclusive ? ' (included)' : ''} on ${t.base}`, amount: t.amount });
  rows.push({ kind: 'total', label: 'Total', amount: inv.total });
  if (!zero(inv.creditsApplied)) rows.push({ kind: 'credits_applied', label: 'Prepaid credit applied', amount: neg(inv.creditsApplied) });
  for (const c of inv.creditNotes) rows.push({ kind: 'credit_note', label: `Credit note ${c.number}`, amount: neg(c.dueReduction) });
  if (rows.length > 1 || inv.amountDue !== inv.total) rows.push({ kind: 'amount_due', label: 'Amount due', amount: inv.amountDue });
  return rows;
}

/** The totals block as `billing invoice show` (and the demo) print it, one row per line. */
export function invoiceTotalsLines(inv: Parameters<typeof invoiceTotalsRows>[0] & Pick<Invoice, 'currency'>): string[] {
  const rows = invoiceTotalsRows(inv);
  const width = Math.max(...rows.map((r) => r.label.length));
  return rows.map((r) => `${r.label.padEnd(width)}  ${r.amount.padStart(12)} ${inv.currency}`);
}

export function invoiceToJson(inv: Invoice | InvoiceSummary) {
  return {
    id: inv.id,
    number: inv.number,
    tenant: inv.tenantId,
    subscription: inv.subscriptionId,
    period: periodToJson(inv.period),
    status: inv.status,
    currency: inv.currency,
    subtotal: inv.subtotal,
    discounts: inv.discounts,
    discountTotal: inv.discountTotal,
    taxes: inv.taxes,
    taxTotal: inv.taxTotal,
    total: inv.total,
    totalMinor: inv.totalMinor,
    creditsApplied: inv.creditsApplied,
    creditNotes: inv.creditNotes.map((c) => ({ number: c.number, amount: c.amount })),
    amountDue: inv.amountDue,
    issuedAt: toIso(inv.issuedAt),
    dueAt: toIso(inv.dueAt),
    finalizedAt: iso(inv.finalizedAt),
    voidedAt: iso(inv.voidedAt),
    voidReason: inv.voidReason,
    paidAt: iso(inv.paidAt),
    paymentRef: inv.paymentRef,
    uncollectibleAt: iso(inv.uncollectibleAt),
    supersedes: inv.supersedes,
    billingReason: inv.billingReason,
    ...('lines' in inv ? { lines: inv.lines.map(lineToJson) } : { lineCount: inv.lineCount }),
  };
}

export function lineToJson(l: InvoiceLine) {
  return {
    lineNo: l.lineNo,
    kind: l.kind,
    feature: l.featureKey,
    description: l.description,
    quantity: l.quantity,
    unitPrice: l.unitPrice,
    amount: l.amount,
    amountPrecise: l.amountPrecise,
    amountMinor: l.amountMinor,
    period: periodToJson(l.period),
    plan: l.planKey === null ? null : { key: l.planKey, version: l.planVersion },
    priceSnapshot: l.priceSnapshot,
    details: l.details,
  };
}
