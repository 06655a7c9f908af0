import type { RatedLine } from '../rate/lines.js';
import type { AppliedDiscount } from '../rate/totals.js';
import { displayInstant, periodToJson, toIso, type Instant, type Period } from '../domain/period.js';

export type InvoiceStatus = 'draft' | 'open' | 'paid' | 'void' | 'uncollectible';
export const INVOICE_STATUSES: InvoiceStatus[] = ['draft', 'open', 'paid', 'void', 'uncollectible'];

export type { BaseFeeDetails, DiscountDetails, LineKind, RatedLine, UsageDetails } from '../rate/lines.js';
export { LINE_KINDS, USAGE_KINDS } from '../rate/lines.js';

export interface InvoiceLine extends RatedLine {
  lineNo: number;
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
  taxTotal: string;
  total: string;
  /** The sum of the lines' minor units: what is collected. */
  totalMinor: string;
  creditsApplied: string;
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
  createdAt: Instant;
  lines: InvoiceLine[];
}

/** What `generateInvoices` reports per invoice (lines are counted, not listed). */
export type InvoiceSummary = Omit<Invoice, 'lines'> & { lineCount: number };

export function summarize(inv: Invoice): InvoiceSummary {
  const { lines, ...head } = inv;
  return { ...head, lineCount: lines.length };
}

const iso = (t: Instant | null) => (t === null ? null : displayInstant(t));

/** The one JSON shape of an invoice (list, show, export, generate --json): ISO instants, decimal strings. */
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
    taxes: [] as Array<{ name: string; rate: string; inclusive: boolean; base: string; amount: string }>,
    taxTotal: inv.taxTotal,
    total: inv.total,
    totalMinor: inv.totalMinor,
    creditsApplied: inv.creditsApplied,
    creditNotes: [] as Array<{ number: string; amount: string }>,
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
