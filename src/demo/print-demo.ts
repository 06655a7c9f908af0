import { reportTable } from '../ui/report.js';
import { toIso, type Instant } from '../domain/period.js';
import type { DemoResult } from './run-demo.js';

/** The demo's closing part: the report, a few entitlement checks, and where to go next. */
export function printDemo(r: DemoResult, opts: { /** Printed: pass the redacted form. */ dbUrl: string; now: Instant; out: (s: string) => void }): void {
  const { out } = opts;
  const flags = `--db ${opts.dbUrl} --now ${toIso(opts.now)}`;
  out(`\n$ billing report --period current`);
  for (const t of r.report) out('\n' + reportTable(t).replace(/^/gm, '  '));
  out(`\n$ billing check TENANT FEATURE --quantity N`);
  for (const c of r.checks) {
    const x = c.result;
    const verdict = x.allowed ? 'allowed' : 'DENIED ';
    out(
      `  ${verdict} ${c.tenantId} ${c.featureKey} ×${c.quantity}: ${x.reason}` +
        (x.included !== null || x.limit !== null ? ` (used ${x.used}, remaining ${x.remaining ?? 'unlimited'}${x.hardStop ? ', hard stop' : ''})` : ''),
    );
  }
  out(`\nDone. Explore the same database (the clock is pinned to the fixtures' today):`);
  for (const c of [
    `billing report --tenant tnt_globex --format csv`,
    `billing invoice list`,
    `billing invoice show ${r.commercial.creditNote.invoiceNumber}`,
    `billing credit list ${r.commercial.grants[0]?.tenantId ?? 'tnt_umbrella'}`,
    `billing credit-note list`,
    `billing invoice export ${r.invoices[0]?.number ?? 'INV-000001'} --format html --out invoice.html`,
    `billing check tnt_acme API_CALL --quantity 500 --json`,
    `billing check tnt_umbrella OCR_SCAN --json`,
    `billing estimate tnt_globex`,
    `billing invoice list --tenant tnt_wayne`,
    `billing alert list --fired`,
    `billing webhook deliveries`,
    `billing verify`,
  ]) out(`  npx ${c} ${flags}`);
}
