import { checkPeriodSpec } from '../../aggregate/periods.js';
import type { RecordResult, UsageInput } from '../../ingest/record.js';
import { buildReport } from '../../report/report.js';
import { prepaidCredit } from '../../subscriptions/credits.js';
import { HttpError } from '../http-error.js';
import { eventTenant, toUsageInput } from '../usage-input.js';
import { consumeRoute } from './entitlements.js';
import { assertTenantAllowed, requireObject } from './guard.js';
import type { Reply, RouteContext } from './types.js';

/**
 * POST /v1/billing/usage: one event (object) or a batch (array). Each event gets its own
 * result, in order; a bad event never fails the others. Idempotent on the ingest key.
 */
export async function recordRoute(ctx: RouteContext): Promise<Reply> {
  const body = ctx.body;
  const single = !Array.isArray(body);
  if (single && requireObject(body).enforce === true) return consumeRoute(ctx);
  const events: unknown[] = single ? [body] : (body as unknown[]);
  if (events.length === 0) throw new HttpError(400, 'invalid_body', 'the batch is empty; send at least one event');
  if (events.length > ctx.maxBatch) {
    throw new HttpError(413, 'batch_too_large', `a batch holds at most ${ctx.maxBatch} events (got ${events.length}); split it`);
  }
  if (!single && events.some((e) => e && typeof e === 'object' && (e as Record<string, unknown>).enforce === true)) {
    throw new HttpError(400, 'invalid_body', '"enforce" applies to single events: send each to POST /v1/billing/entitlements/consume');
  }
  for (const e of events) assertTenantAllowed(ctx, eventTenant(e));

  const results: RecordResult[] = new Array(events.length);
  const inputs: UsageInput[] = [];
  const slots: number[] = [];
  events.forEach((e, i) => {
    const ev = toUsageInput(e);
    if (ev.ok) {
      inputs.push(ev.input);
      slots.push(i);
    } else {
      results[i] = { status: 'rejected', field: ev.field, reason: ev.reason };
    }
  });
  if (inputs.length) {
    const recorded = await ctx.usage.record(inputs, ctx.now);
    recorded.forEach((r, j) => (results[slots[j]] = r));
  }
  const count = (s: RecordResult['status']) => results.filter((r) => r.status === s).length;
  const summary = { inserted: count('inserted'), duplicates: count('duplicate'), rejected: count('rejected') };
  ctx.metrics.countUsage('inserted', summary.inserted);
  ctx.metrics.countUsage('duplicate', summary.duplicates);
  ctx.metrics.countUsage('rejected', summary.rejected);
  const status = single && summary.rejected === 1 ? 422 : 200;
  return { status, body: { ...summary, results } };
}

/**
 * GET /v1/billing/usage/:tenantId[?period=current|previous|YYYY-MM]: the fields of
 * `billing report --json` for one tenant (404 for an unknown tenant), and `credits`: its
 * prepaid balance now, as `billing check --json` gives it.
 */
export async function summaryRoute(ctx: RouteContext): Promise<Reply> {
  const tenantId = ctx.params.tenantId;
  assertTenantAllowed(ctx, tenantId);
  // Checked here so the message names the query parameter, not the CLI's --period.
  const period = checkPeriodSpec(ctx.query.get('period') ?? 'current', 'period');
  const [report] = await buildReport(ctx.db, { now: ctx.now, tenantId, period });
  return { status: 200, body: { ...report, credits: await prepaidCredit(ctx.db.knex, tenantId, ctx.now) } };
}
