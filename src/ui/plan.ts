import type { StageReport } from '../jobs/pipeline.js';
import { formatTable } from '../format/table.js';
import { formatPeriod } from '../format/period.js';

/** One cell for the run table: what a previewed stage would do. */
export function planSummary(r: StageReport): string {
  const p = r.plan as Record<string, any> | undefined;
  if (!p) return '';
  if (r.job === 'aggregate') return `${p.eventsWaiting} event(s) to summarize`;
  if (r.job === 'invoice') return `${(p.invoices ?? []).length} invoice(s) to generate`;
  if (r.job === 'stripe-sync') return `${(p.planned ?? []).length} Stripe call(s)`;
  return '';
}

/** `billing run --dry-run` for people: each stage's preview as a few plain lines. */
export function planText(r: StageReport): string[] {
  const p = r.plan as Record<string, any> | undefined;
  if (!p) return [];
  if (r.job === 'aggregate') return [`aggregate: ${p.eventsWaiting} event(s) waiting to be summarized`];
  if (r.job === 'invoice') {
    const invoices = (p.invoices ?? []) as Array<Record<string, any>>;
    if (invoices.length === 0) return ['invoice: no period to close'];
    return [
      `invoice: ${invoices.length} invoice(s) would be generated (after aggregating and rating)`,
      formatTable(
        ['NUMBER', 'TENANT', 'PERIOD', 'STATUS', 'TOTAL', 'LINES'],
        invoices.map((i) => [i.number, i.tenant, formatPeriod(i.period), i.status, `${i.total} ${i.currency}`, i.lines?.length ?? i.lineCount ?? '']),
      ),
    ];
  }
  if (r.job === 'stripe-sync') {
    const calls = (p.planned ?? []) as Array<{ method: string; path: string; idempotencyKey: string }>;
    const out = [`stripe-sync: ${calls.length} Stripe call(s) for what is already open (not the invoices above)`];
    for (const c of calls) out.push(`  ${c.method} ${c.path}  Idempotency-Key: ${c.idempotencyKey}`);
    for (const e of (p.errors ?? []) as Array<{ message: string }>) out.push(`  would fail: ${e.message}`);
    return out;
  }
  return [`${r.job}: ${JSON.stringify(p)}`];
}
