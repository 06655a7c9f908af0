import { toCsv } from '../format/csv.js';
import { BillingError } from '../domain/errors.js';
import type { PlanFeature } from '../domain/catalog.js';
import { dec } from '../domain/decimal.js';
import { currencyDigits } from '../domain/money.js';
import { displayInstant, toIso, type Period } from '../domain/period.js';
import type { SellerDetails } from './seller.js';
import { invoiceToJson, invoiceTotalsRows, SUBTOTAL_KINDS, USAGE_KINDS, type Invoice, type InvoiceLine, type UsageDetails } from './types.js';

export type ExportFormat = 'json' | 'csv' | 'html';
export const EXPORT_FORMATS: ExportFormat[] = ['json', 'csv', 'html'];

/** Who the HTML page names besides the invoice itself: the customer's name and the seller. */
export interface InvoiceParties {
  tenantName?: string | null;
  seller?: SellerDetails | null;
}

export function renderInvoice(inv: Invoice, format: string, parties: InvoiceParties = {}): string {
  switch (format) {
    case 'json':
      return JSON.stringify(invoiceToJson(inv), null, 2) + '\n';
    case 'csv':
      return renderCsv(inv);
    case 'html':
      return renderHtml(inv, parties);
    default:
      throw new BillingError('usage', `unknown export format "${format}" (use ${EXPORT_FORMATS.join(', ')})`);
  }
}

const day = (t: number) => displayInstant(t).replace(/T.*/, '');

/** One row per line with the invoice's identity on each, then a total row. Formula-safe cells. */
function renderCsv(inv: Invoice): string {
  const columns = ['invoice', 'tenant', 'status', 'currency', 'line', 'kind', 'feature', 'description', 'period_start', 'period_end', 'quantity', 'unit_price', 'amount'];
  const rows: unknown[][] = inv.lines.map((l) => [
    inv.number, inv.tenantId, inv.status, inv.currency, l.lineNo, l.kind, l.featureKey, l.description,
    toIso(l.period.start), toIso(l.period.end), l.quantity, l.unitPrice, l.amount,
  ]);
  for (const t of invoiceTotalsRows(inv)) {
    rows.push([inv.number, inv.tenantId, inv.status, inv.currency, '', t.kind, '', t.label, toIso(inv.period.start), toIso(inv.period.end), '', '', t.amount]);
  }
  return toCsv(columns, rows);
}

export function escapeHtml(v: unknown): string {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const DAY_MS = 86_400_000;

/**
 * A period as a reader takes it: the last day inclusive when it runs midnight to midnight UTC
 * ([2026-01-01, 2026-02-01) is "2026-01-01 – 2026-01-31"); otherwise start and end times.
 */
export function htmlPeriod(p: Period): string {
  if (p.start % DAY_MS === 0 && p.end % DAY_MS === 0 && p.end > p.start) {
    const first = day(p.start);
    const last = day(p.end - DAY_MS);
    return first === last ? first : `${first} – ${last}`;
  }
  const minute = (t: number) => displayInstant(t).slice(0, 16).replace('T', ' ');
  return `${minute(p.start)} – ${minute(p.end)} UTC`;
}

const isZero = (x: string) => dec(x).isZero();

/** Zero-amount usage lines say nothing the customer pays for; base fee, taxes and the rest stay. */
function hidden(l: InvoiceLine): boolean {
  return USAGE_KINDS.includes(l.kind) && isZero(l.amount);
}

function usageTerms(l: InvoiceLine): { pricing: PlanFeature['overage']; details: UsageDetails | null } {
  const snap = l.priceSnapshot as Partial<PlanFeature> | null;
  const details = l.details && 'tiers' in l.details && Array.isArray(l.details.tiers) ? l.details : null;
  return { pricing: snap && 'overage' in snap ? (snap.overage ?? null) : null, details };
}

/** The unit price cell of a usage line: the price per unit or per package, or "tiered" (the tiers follow). */
function unitPriceCell(l: InvoiceLine): string {
  if (l.unitPrice !== null) return l.unitPrice;
  if (!USAGE_KINDS.includes(l.kind)) return '';
  const { pricing } = usageTerms(l);
  switch (pricing?.model) {
    case 'package':
      return `${pricing.packagePrice} per ${pricing.size}`;
    case 'graduated':
    case 'volume':
      return `tiered (${pricing.model})`;
    default:
      return '';
  }
}

/** An exact price or amount with at least the currency's decimals ("5" → "5.00", "0.005" stays), never rounded. */
function exact(x: string, currency: string): string {
  const d = dec(x);
  return d.toFixed(Math.max(currencyDigits(currency), d.decimalPlaces()));
}

/** How a usage line's amount comes about: each priced tier, package or minimum, and what was billed before. */
function breakdown(l: InvoiceLine, currency: string): string[] {
  if (!USAGE_KINDS.includes(l.kind)) return [];
  const { pricing, details } = usageTerms(l);
  if (!details) return [];
  const billedBefore = !isZero(details.billedBefore);
  const plain = pricing?.model === 'per_unit' && details.tiers.length === 1 && details.tiers[0].ref === 'unit';
  if (plain && !billedBefore) return [];
  const out = details.tiers.map((t) => {
    const m = (x: string) => exact(x, currency);
    if (t.unitPrice === null) return `${t.description}: ${m(t.amount)}`;
    const flat = t.flatPrice === null ? '' : ` + ${m(t.flatPrice)} flat`;
    return `${t.description}: ${t.quantity} × ${m(t.unitPrice)}${flat} = ${m(t.amount)}`;
  });
  if (billedBefore) out.push(`due for ${details.usedTotal} used: ${details.dueAmount}, less ${details.billedBefore} billed before`);
  return out;
}

/** A printable, self-contained page: inline CSS, no scripts, no external resources, every value escaped. */
function renderHtml(inv: Invoice, parties: InvoiceParties): string {
  const e = escapeHtml;
  const draft = inv.status === 'draft';
  const shown = inv.lines.filter((l) => SUBTOTAL_KINDS.includes(l.kind) && !hidden(l));
  const hiddenCount = inv.lines.filter(hidden).length;
  const rows = shown
    .map((l) => {
      const parts = breakdown(l, inv.currency);
      const detail = parts.length === 0 ? '' : `\n          <ul class="tiers">${parts.map((p) => `<li>${e(p)}</li>`).join('')}</ul>`;
      return `      <tr class="${e(l.kind)}">
        <td>${e(l.lineNo)}</td><td>${e(l.description)}${detail}</td><td class="period">${e(htmlPeriod(l.period))}</td>
        <td class="num">${e(l.quantity ?? '')}</td><td class="num">${e(unitPriceCell(l))}</td><td class="num">${e(l.amount)}</td>
      </tr>`;
    })
    .join('\n');

  const totals = invoiceTotalsRows(inv);
  // Cash rounding acts on the amount due, after credits: shown just above it.
  const rounding = inv.lines.filter((l) => l.kind === 'rounding' && !isZero(l.amount));
  if (rounding.length > 0) {
    const at = totals.findIndex((t) => t.kind === 'credit_note' || t.kind === 'amount_due');
    totals.splice(at < 0 ? totals.length : at, 0, ...rounding.map((l) => ({ kind: 'rounding', label: l.description, amount: l.amount })));
  }

  const facts: Array<[string, string]> = [
    ['Invoice', inv.number],
    ['Status', draft ? 'draft (not issued; amounts may still change)' : inv.status],
    ['Subscription', inv.subscriptionId],
    ['Period', htmlPeriod(inv.period)],
  ];
  // A draft has not been issued: its issue and due dates are set when it is finalized.
  if (!draft) facts.push(['Issued', day(inv.issuedAt)], ['Due', day(inv.dueAt)]);
  if (inv.status === 'void' && inv.voidReason) facts.push(['Void reason', inv.voidReason]);
  if (inv.paidAt !== null) facts.push(['Paid', day(inv.paidAt)]);

  const name = parties.tenantName?.trim() || null;
  const customer = [
    `      <h2>Bill to</h2>`,
    name === null ? `      <p class="name">${e(inv.tenantId)}</p>` : `      <p class="name">${e(name)}</p>\n      <p>Customer ID: ${e(inv.tenantId)}</p>`,
  ];
  const s = parties.seller ?? null;
  const seller =
    s === null
      ? ''
      : `    <div class="seller">
      <h2>From</h2>
${[
  s.name === null ? null : `      <p class="name">${e(s.name)}</p>`,
  ...s.addressLines.map((a) => `      <p>${e(a)}</p>`),
  s.email === null ? null : `      <p>${e(s.email)}</p>`,
  s.taxId === null ? null : `      <p>Tax ID: ${e(s.taxId)}</p>`,
]
  .filter((x) => x !== null)
  .join('\n')}
    </div>
`;
  const mark = draft ? 'DRAFT' : inv.status === 'void' ? 'VOID' : null;
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
  <title>${draft ? 'Draft invoice' : 'Invoice'} ${e(inv.number)}</title>
  <style>
    body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #111; }
    h1 { font-size: 1.6rem; margin: 0 0 1rem; }
    h2 { font-size: .8rem; text-transform: uppercase; letter-spacing: .05em; color: #555; margin: 0 0 .3rem; }
    .parties { display: flex; gap: 4rem; margin: 0 0 1.5rem; }
    .parties p { margin: 0; }
    .parties .name { font-weight: 600; }
    dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; margin: 0 0 1.5rem; }
    dt { font-weight: 600; }
    table { border-collapse: collapse; width: 100%; }
    th, td { border-bottom: 1px solid #ccc; padding: .35rem .5rem; text-align: left; vertical-align: top; }
    .num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
    .period { white-space: nowrap; }
    .tiers { margin: .3rem 0 0; padding-left: 1.2rem; color: #444; font-size: .9em; }
    tfoot td { font-weight: 700; border-bottom: none; }
    .credit td { color: #0a5; }
    .note { color: #555; font-size: .9em; }
    .watermark { position: fixed; top: 40%; left: 0; right: 0; text-align: center; font-size: 8rem; font-weight: 800;
      color: rgba(200, 0, 0, .12); transform: rotate(-30deg); pointer-events: none; user-select: none; }
    @media print { body { margin: 0; } }
  </style>
</head>
<body>
${mark === null ? '' : `  <div class="watermark" aria-hidden="true">${mark}</div>\n`}  <h1>${draft ? 'Draft invoice' : 'Invoice'} ${e(inv.number)}</h1>
  <div class="parties">
${seller}    <div class="customer">
${customer.join('\n')}
    </div>
  </div>
  <dl>
${facts.map(([k, v]) => `    <dt>${e(k)}</dt><dd>${e(v)}</dd>`).join('\n')}
  </dl>
  <table>
    <thead><tr><th>#</th><th>Description</th><th>Period</th><th class="num">Quantity</th><th class="num">Unit price</th><th class="num">Amount (${e(inv.currency)})</th></tr></thead>
    <tbody>
${rows}
    </tbody>
    <tfoot>
${totals.map((t) => `      <tr class="${e(t.kind)}"><td colspan="5">${e(t.label)}</td><td class="num">${e(t.amount)} ${e(inv.currency)}</td></tr>`).join('\n')}
    </tfoot>
  </table>
${hiddenCount === 0 ? '' : `  <p class="note">${hiddenCount} usage line(s) with nothing to pay not shown.</p>\n`}</body>
</html>
`;
}
