import { checkEntitlement } from '../../entitlements/check.js';
import { ALIASES } from '../../ingest/fields.js';
import { consumeUsage } from '../consume.js';
import { HttpError } from '../http-error.js';
import { eventTenant, toUsageInput } from '../usage-input.js';
import { assertTenantAllowed, requireObject } from './guard.js';
import type { Reply, RouteContext } from './types.js';

function requiredText(o: Record<string, unknown>, names: readonly string[], label: string): string {
  for (const n of names) {
    const v = o[n];
    if (typeof v === 'string' && v !== '') return v;
  }
  throw new HttpError(400, 'invalid_body', `${label} is required (a non-empty string)`);
}

/** POST /v1/billing/entitlements/check: the same answer as `billing check`. */
export async function checkRoute(ctx: RouteContext): Promise<Reply> {
  const body = requireObject(ctx.body);
  const tenantId = requiredText(body, ALIASES.tenant_id, 'tenantId');
  const featureKey = requiredText(body, ALIASES.feature, 'usageType (or featureId)');
  const q = ALIASES.quantity.map((n) => body[n]).find((v) => v !== undefined && v !== null);
  if (q !== undefined && typeof q !== 'string' && typeof q !== 'number') {
    throw new HttpError(400, 'invalid_body', 'quantity must be a number or a decimal string');
  }
  assertTenantAllowed(ctx, tenantId);
  const result = await checkEntitlement(
    ctx.db,
    { tenantId, featureKey, quantity: q === undefined ? undefined : String(q) },
    { now: ctx.now },
  );
  ctx.metrics.countCheck(result.reason);
  return { status: result.reason === 'unknown_tenant' ? 404 : 200, body: result };
}

/**
 * POST /v1/billing/entitlements/consume (and POST /v1/billing/usage with "enforce": true):
 * check and record one event atomically, so concurrent callers cannot overshoot a hard stop.
 */
export async function consumeRoute(ctx: RouteContext): Promise<Reply> {
  const body = requireObject(ctx.body);
  assertTenantAllowed(ctx, eventTenant(body));
  const ev = toUsageInput(body);
  if (!ev.ok) {
    ctx.metrics.countUsage('rejected');
    return { status: 422, body: { status: 'rejected', rejection: { field: ev.field, reason: ev.reason } } };
  }
  const { check, record } = await consumeUsage(ctx.db, ev.input, { now: ctx.now, backfillDays: ctx.backfillDays });
  ctx.metrics.countCheck(check.reason);
  ctx.metrics.countUsage(record ? record.status : 'denied');
  if (!record) return { status: check.reason === 'unknown_tenant' ? 404 : 200, body: { status: 'denied', ...check } };
  if (record.status === 'rejected') {
    return { status: 422, body: { status: 'rejected', rejection: { field: record.field, reason: record.reason }, ...check } };
  }
  return { status: 200, body: { status: record.status, idempotencyKey: record.idempotencyKey, ...check } };
}
