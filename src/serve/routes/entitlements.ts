import { checkEntitlement } from '../../entitlements/check.js';
import { ALIASES } from '../../ingest/fields.js';
import { consumeUsage } from '../consume.js';
import { HttpError } from '../http-error.js';
import { toUsageInput } from '../usage-input.js';
import { assertTenantAllowed, requireObject } from './guard.js';
import type { Reply, RouteContext } from './types.js';

function requiredText(o: Record<string, unknown>, names: readonly string[], label: string): string {
  for (const n of names) {
    const v = o[n];
    if (typeof v === 'string' && v !== '') return v;
  }
  throw new HttpError(400, 'invalid_body', `${label} is required (a non-empty string)`);
}

/** The fields check and consume share, with the same 400s for both. */
function checkFields(body: Record<string, unknown>): { tenantId: string; featureKey: string; quantity: string | number | undefined } {
  const tenantId = requiredText(body, ALIASES.tenant_id, 'tenantId');
  const featureKey = requiredText(body, ALIASES.feature, 'usageType (or featureId)');
  const q = ALIASES.quantity.map((n) => body[n]).find((v) => v !== undefined && v !== null);
  // As in ingest: no quantity means 1, an empty one (null, "") is a mistake.
  if ((q === undefined && ALIASES.quantity.some((n) => body[n] === null)) || (typeof q === 'string' && q.trim() === '')) {
    throw new HttpError(400, 'invalid_body', 'quantity is empty (leave it out for the default 1)');
  }
  if (q !== undefined && typeof q !== 'string' && typeof q !== 'number') {
    throw new HttpError(400, 'invalid_body', 'quantity must be a number or a decimal string');
  }
  return { tenantId, featureKey, quantity: q };
}

/** POST /v1/billing/entitlements/check: the same answer as `billing check`. */
export async function checkRoute(ctx: RouteContext): Promise<Reply> {
  const body = requireObject(ctx.body);
  const { tenantId, featureKey, quantity: q } = checkFields(body);
  assertTenantAllowed(ctx, tenantId);
  // A feature priced by dimension (DESIGN.md §14): the value of its field to check.
  const dimension = body.dimension;
  if (dimension !== undefined && (typeof dimension !== 'string' || dimension === '')) {
    throw new HttpError(400, 'invalid_body', 'dimension must be a non-empty string (the value of the feature\'s field to check)');
  }
  const result = await checkEntitlement(
    ctx.db,
    { tenantId, featureKey, quantity: q === undefined ? undefined : String(q), ...(dimension !== undefined ? { dimension } : {}) },
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
  const fields = checkFields(body);
  assertTenantAllowed(ctx, fields.tenantId);
  const ev = toUsageInput(body);
  if (!ev.ok) {
    ctx.metrics.countUsage('rejected');
    return { status: 422, body: { status: 'rejected', rejection: { field: ev.field, reason: ev.reason } } };
  }
  // The checked values are the recorded ones (an alias may hold a second, different value).
  const input = { ...ev.input, tenantId: fields.tenantId, featureKey: fields.featureKey, quantity: fields.quantity };
  const { check, record } = await consumeUsage(ctx.db, input, { now: ctx.now, backfillDays: ctx.backfillDays });
  ctx.metrics.countCheck(check.reason);
  ctx.metrics.countUsage(record ? record.status : 'denied');
  if (!record) return { status: check.reason === 'unknown_tenant' ? 404 : 200, body: { status: 'denied', ...check } };
  if (record.status === 'rejected') {
    return { status: 422, body: { status: 'rejected', rejection: { field: record.field, reason: record.reason }, ...check } };
  }
  return { status: 200, body: { status: record.status, idempotencyKey: record.idempotencyKey, ...check } };
}
