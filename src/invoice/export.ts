import { toCsv } from '../format/csv.js';
import { BillingError } from '../domain/errors.js';
import { displayInstant, toIso } from '../domain/period.js';
import { invoiceToJson, invoiceTotalsRows, type Invoice } from './types.js';

export type ExportFormat = 'json' | 'csv' | 'html';
export const EXPORT_FORMATS: ExportFormat[] = ['json', 'csv', 'html'];

export function renderInvoice(inv: Invoice, format: string): string {
  switch (format) {
    case 'json':
      return JSON.stringify(invoiceToJson(inv), null, 2) + '\n';
    case 'csv':
      return renderCsv(inv);
    case 'html':
      return renderHtml(inv);
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

/** A printable, self-contained page: inline CSS, no scripts, no external resources, every value escaped. */
function renderHtml(inv: Invoice): string {
  const e = escapeHtml;
  const rows = inv.lines
    .map(
      (l) => `      <tr class="${e(l.kind)}">
        <td>${e(l.lineNo)}</td><td>${e(l.description)}</td><td>${e(day(l.period.start))} to ${e(day(l.period.end))}</td>
        <td class="num">${e(l.quantity ?? '')}</td><td class="num">${e(l.unitPrice ?? '')}</td><td class="num">${e(l.amount)}</td>
      </tr>`,
    )
    .join('\n');
  const facts: Array<[string, string]> = [
    ['Invoice', inv.number],
    ['Status', inv.status],
    ['Customer', inv.tenantId],
    ['Subscription', inv.subscriptionId],
    ['Period', `${day(inv.period.start)} to ${day(inv.period.end)}`],
    ['Issued', day(inv.issuedAt)],
    ['Due', day(inv.dueAt)],
  ];
  if (inv.status === 'void' && inv.voidReason) facts.push(['Void reason', inv.voidReason]);
  if (inv.paidAt !== null) facts.push(['Paid', day(inv.paidAt)]);
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
  <title>Invoice ${e(inv.number)}</title>
  <style>
    body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #111; }
    h1 { font-size: 1.6rem; margin: 0 0 1rem; }
    dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; margin: 0 0 1.5rem; }
    dt { font-weight: 600; }
    table { border-collapse: collapse; width: 100%; }
    th, td { border-bottom: 1px solid #ccc; padding: .35rem .5rem; text-align: left; vertical-align: top; }
    .num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
    tfoot td { font-weight: 700; border-bottom: none; }
    .credit td { color: #0a5; }
    @media print { body { margin: 0; } }
  </style>
</head>
<body>
  <h1>Invoice ${e(inv.number)}</h1>
  <dl>
${facts.map(([k, v]) => `    <dt>${e(k)}</dt><dd>${e(v)}</dd>`).join('\n')}
  </dl>
  <table>
    <thead><tr><th>#</th><th>Description</th><th>Period</th><th class="num">Quantity</th><th class="num">Unit price</th><th class="num">Amount (${e(inv.currency)})</th></tr></thead>
    <tbody>
${rows}
    </tbody>
    <tfoot>
${invoiceTotalsRows(inv).map((t) => `      <tr class="${e(t.kind)}"><td colspan="5">${e(t.label)}</td><td class="num">${e(t.amount)} ${e(inv.currency)}</td></tr>`).join('\n')}
    </tfoot>
  </table>
</body>
</html>
`;
}
