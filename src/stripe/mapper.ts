import { createHash } from 'node:crypto';
import type { Instant } from '../domain/period.js';
import { microToDecimal } from '../domain/quantity.js';
import { toStripeUnits } from './currency.js';

/**
 * Local objects → Stripe parameters and deterministic idempotency keys (pure). Amounts are
 * converted from the exact major-unit amount the invoice stored into Stripe's units for the
 * currency (stripe/currency.ts), never by reusing the local minor-unit integer: ISO and
 * Stripe disagree on some currencies (ISK, MGA).
 */

const MAX_KEY = 255; // Stripe's limit on Idempotency-Key
const MAX_IDENTIFIER = 100; // and on a meter event identifier

function bounded(s: string, max: number): string {
  if (s.length <= max) return s;
  const hash = createHash('sha256').update(s).digest('hex').slice(0, 24);
  return `${s.slice(0, max - hash.length - 1)}~${hash}`;
}

export const idempotencyKeys = {
  customer: (tenantId: string, generation: number) => bounded(`billing/${tenantId}/customer/${generation}`, MAX_KEY),
  invoice: (tenantId: string, invoiceId: string) => bounded(`billing/${tenantId}/invoice/${invoiceId}`, MAX_KEY),
  invoiceItem: (tenantId: string, invoiceId: string, lineNo: number) =>
    bounded(`billing/${tenantId}/invoice/${invoiceId}/line/${lineNo}`, MAX_KEY),
  finalize: (tenantId: string, invoiceId: string) => bounded(`billing/${tenantId}/invoice/${invoiceId}/finalize`, MAX_KEY),
  pay: (tenantId: string, invoiceId: string) => bounded(`billing/${tenantId}/invoice/${invoiceId}/pay`, MAX_KEY),
  uncollectible: (tenantId: string, invoiceId: string) => bounded(`billing/${tenantId}/invoice/${invoiceId}/uncollectible`, MAX_KEY),
  void: (tenantId: string, invoiceId: string) => bounded(`billing/${tenantId}/invoice/${invoiceId}/void`, MAX_KEY),
  creditNote: (tenantId: string, creditNoteId: string) => bounded(`billing/${tenantId}/credit_note/${creditNoteId}`, MAX_KEY),
  dunning: (tenantId: string, invoiceId: string, retry: number) =>
    bounded(`billing/${tenantId}/invoice/${invoiceId}/dunning/${retry}`, MAX_KEY),
  meterEvent: (tenantId: string, seq: string) => bounded(`billing/${tenantId}/usage/${seq}`, MAX_KEY),
};

/** The meter event identifier Stripe deduplicates on: the tenant and our event sequence. */
function meterIdentifier(tenantId: string, seq: string): string {
  return bounded(`${tenantId}:${seq}`, MAX_IDENTIFIER);
}

const toUnixSeconds = (t: Instant): number => Math.floor(t / 1000);

function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

export interface CustomerParams {
  name?: string;
  metadata: { tenant_id: string };
}

export function customerParams(tenant: { id: string; name: string | null }): CustomerParams {
  return { ...(tenant.name ? { name: clip(tenant.name, 256) } : {}), metadata: { tenant_id: tenant.id } };
}

export interface InvoiceRef {
  tenantId: string;
  id: string;
  number: string;
  currency: string;
}

export interface InvoiceParams {
  currency: string;
  collection_method: 'charge_automatically';
  auto_advance: false;
  pending_invoice_items_behavior: 'exclude';
  description: string;
  metadata: { tenant_id: string; billing_invoice_id: string; billing_invoice_number: string };
}

/**
 * A draft we fill and finalize ourselves: `auto_advance: false` keeps Stripe from finalizing
 * or collecting on its own schedule (billing runs the payment attempts and dunning), and
 * `exclude` keeps unrelated pending items of the customer off it.
 */
export function invoiceParams(inv: InvoiceRef): InvoiceParams {
  return {
    currency: inv.currency.toLowerCase(),
    collection_method: 'charge_automatically',
    auto_advance: false,
    pending_invoice_items_behavior: 'exclude',
    description: `Invoice ${inv.number}`,
    metadata: { tenant_id: inv.tenantId, billing_invoice_id: inv.id, billing_invoice_number: inv.number },
  };
}

export interface LineRef {
  lineNo: number;
  description: string;
  /** Major units, exact, in the invoice's currency. */
  amount: string;
  period: { start: Instant; end: Instant };
}

export interface InvoiceItemParams {
  amount: number;
  currency: string;
  description: string;
  period: { start: number; end: number };
  metadata: { tenant_id: string; billing_invoice_id: string; billing_line_no: string };
}

/** Throws a BillingError when the line's amount cannot be carried in Stripe's units. */
export function invoiceItemParams(inv: InvoiceRef, line: LineRef): InvoiceItemParams {
  const start = toUnixSeconds(line.period.start);
  return {
    amount: toStripeUnits(line.amount, inv.currency),
    currency: inv.currency.toLowerCase(),
    description: clip(line.description, 5000),
    period: { start, end: Math.max(start, toUnixSeconds(line.period.end)) },
    metadata: { tenant_id: inv.tenantId, billing_invoice_id: inv.id, billing_line_no: String(line.lineNo) },
  };
}

/** Stripe's credit note reasons; any other reason text travels in the memo only. */
const STRIPE_CN_REASONS = ['duplicate', 'fraudulent', 'order_change', 'product_unsatisfactory'] as const;

export interface CreditNoteRef {
  tenantId: string;
  id: string;
  number: string;
  invoiceId: string;
  invoiceNumber: string;
  currency: string;
  /** Major units, exact: what it took off the amount due, and what became a grant (or refund). */
  dueReduction: string;
  credited: string;
  refund: boolean;
  reason: string;
}

/**
 * The outbox payload of a credit note. Which Stripe amounts are sent depends on the Stripe
 * invoice's status at delivery (deliver.ts): `pre` lowers an open invoice's amount due;
 * `post` on a paid one is a refund with --refund, else out of band (the local prepaid grant
 * reaches Stripe as a negative item on a later invoice, so Stripe's customer balance must not
 * carry it too).
 */
export interface CreditNotePayload {
  invoice_id: string;
  pre: number;
  post: number;
  refund: boolean;
  reason: (typeof STRIPE_CN_REASONS)[number] | null;
  memo: string;
  metadata: { tenant_id: string; billing_invoice_id: string; billing_credit_note_id: string; billing_credit_note_number: string };
}

/** Throws a BillingError when an amount cannot be carried in Stripe's units. */
export function creditNotePayload(cn: CreditNoteRef): CreditNotePayload {
  const word = cn.reason.trim().toLowerCase().replace(/[\s-]+/g, '_');
  return {
    invoice_id: cn.invoiceId,
    pre: toStripeUnits(cn.dueReduction, cn.currency),
    post: toStripeUnits(cn.credited, cn.currency),
    refund: cn.refund,
    reason: (STRIPE_CN_REASONS as readonly string[]).includes(word) ? (word as CreditNotePayload['reason']) : null,
    memo: clip(`Credit note ${cn.number} on ${cn.invoiceNumber}: ${cn.reason}`, 5000),
    metadata: { tenant_id: cn.tenantId, billing_invoice_id: cn.invoiceId, billing_credit_note_id: cn.id, billing_credit_note_number: cn.number },
  };
}

export interface MeterEventParams {
  event_name: string;
  identifier: string;
  timestamp: number;
  payload: { value: string };
}

export type MeterValue = { ok: true; value: string } | { ok: false; reason: string };

/** Stripe meter values are whole numbers; a fractional quantity cannot be sent as is. */
export function meterValue(quantityMicro: string): MeterValue {
  const q = microToDecimal(quantityMicro);
  if (!q.isInteger()) return { ok: false, reason: `quantity ${q.toFixed()} is not a whole number; Stripe meter values must be integers` };
  return { ok: true, value: q.toFixed(0) };
}

export function meterEventParams(ev: { tenantId: string; seq: string; occurredAt: Instant; value: string }, eventName: string): MeterEventParams {
  return {
    event_name: eventName,
    identifier: meterIdentifier(ev.tenantId, ev.seq),
    timestamp: toUnixSeconds(ev.occurredAt),
    payload: { value: ev.value },
  };
}

/** Stripe accepts meter events from 35 days back to 5 minutes ahead of its clock. */
export const METER_WINDOW = { pastMs: 35 * 86_400_000, futureMs: 5 * 60_000 } as const;
