import { mayActFor } from '../auth.js';
import { HttpError } from '../http-error.js';
import type { RouteContext } from './types.js';

/** A JWT may only act for the tenant in its claim (service secrets act for any tenant). */
export function assertTenantAllowed(ctx: RouteContext, tenantId: string | null): void {
  if (ctx.client && tenantId !== null && !mayActFor(ctx.client, tenantId)) {
    throw new HttpError(403, 'forbidden', `this token is not allowed to act for tenant "${tenantId}"`);
  }
}

export function requireObject(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(400, 'invalid_body', 'request body must be a JSON object');
  }
  return body as Record<string, unknown>;
}
