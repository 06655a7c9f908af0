import type { PlanFeature } from '../domain/catalog.js';
import { displayInstant, periodToJson, toIso, type Instant, type Period } from '../domain/period.js';

export type InvoiceStatus = 'draft' | 'open' | 'paid' | 'void' | 'uncollectible';
export const INVOICE_STATUSES: InvoiceStatus[] = ['draft', 'open', 'paid', 'void', 'uncollectible'];

/**
 * credit: a negative correction (late usage revised down), always with a reason.
 * rounding: brings the total of a BHD/JOD/KWD/OMR/TND invoice to a collectible multiple of 10 minor units.
 */
export type LineKind = 'base_fee' | 'overage' | 'late_usage' | 'credit' | 'minimum' | 'rounding';
export const LINE_KINDS: LineKind[] = ['base_fee', 'overage', 'late_usage', 'credit', 'minimum', 'rounding'];

/** Usage-derived kinds: together they are what was billed for a (tenant, feature, period). */
export const USAGE_KINDS: LineKind[] = ['overage', 'minimum', 'late_usage', 'credit'];

/** Base fee line details: the proration, enough for `billing verify` to recompute it. */
export interface BaseFeeDetails {
  from: Instant;
  to: Instant;
  billedSeconds: string;
  periodSeconds: string;
  /** The nominal (unclipped) period the plan price is for. */
  nominal: { start: Instant; end: Instant };
  trialExcluded: boolean;
}

/**
 * Usage line details. Every usage line bills (due now − billed before) for its period:
 * due = rateUsage(priceSnapshot, usedTotal) rounded; the line's amount is exact in minor units.
 */
export interface UsageDetails {
  usedTotal: string;
  usedBefore: string;
  included: string | null;
  billable: string;
  dueAmount: string;
  duePrecise: string;
  billedBefore: string;
  tiers: Array<{ ref: string; description: string; quantity: string; unitPrice: string | null; flatPrice: string | null; amount: string }>;
  reason?: string;
}

export interface InvoiceLine {
  lineNo: number;
  kind: LineKind;
  featureKey: string | null;
  description: string;
  quantity: string | null;
  unitPrice: string | null;
  amountPrecise: string;
  amount: string;
  amountMinor: string;
  period: Period;
  planKey: string | null;
  planVersion: number | null;
  priceSnapshot: PlanFeature | { price: string; interval: string } | null;
  details: BaseFeeDetails | UsageDetails | null;
}

export interface Invoice {
  id: string;
  number: string;
  tenantId: string;
  subscriptionId: string;
  period: Period;
  status: InvoiceStatus;
  currency: string;
  subtotal: string;
  total: string;
  totalMinor: string;
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
    total: inv.total,
    totalMinor: inv.totalMinor,
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
