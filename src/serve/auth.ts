import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { verifyJwt, type JwtKeys } from './jwt.js';

export interface AuthConfig {
  /** Accepted X-Service-Secret values; several at once so secrets can be rotated. */
  serviceSecrets: string[];
  jwt?: JwtKeys;
}

/** Who is calling. `tenantId` null: a service secret, trusted for every tenant. */
export interface Client {
  id: string;
  tenantId: string | null;
}

export type AuthResult = { ok: true; client: Client } | { ok: false; message: string };

const TENANT_CLAIMS = ['tenant_id', 'tenantId', 'org_id'] as const;

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

const secretDigests = new WeakMap<string[], Buffer[]>();

/**
 * Compare the presented secret with every configured one in constant time: equal-length
 * digests through timingSafeEqual, and no early exit that would tell which one matched.
 */
function matchSecret(given: string, secrets: string[]): number {
  let digests = secretDigests.get(secrets);
  if (!digests) secretDigests.set(secrets, (digests = secrets.map(digest)));
  const g = digest(given);
  let match = -1;
  for (let i = 0; i < digests.length; i++) if (timingSafeEqual(g, digests[i]) && match < 0) match = i;
  return match;
}

function tenantClaim(claims: Record<string, unknown>): string | null {
  for (const k of TENANT_CLAIMS) {
    const v = claims[k];
    if (typeof v === 'string' && v !== '') return v;
  }
  return null;
}

/** Authenticate a request from its headers. Never echoes or logs the credential. */
export async function authenticate(headers: IncomingHttpHeaders, config: AuthConfig, nowMs: number): Promise<AuthResult> {
  const secret = headers['x-service-secret'];
  if (typeof secret === 'string' && secret !== '') {
    const i = config.serviceSecrets.length ? matchSecret(secret, config.serviceSecrets) : -1;
    return i >= 0 ? { ok: true, client: { id: `service:${i + 1}`, tenantId: null } } : { ok: false, message: 'invalid service secret' };
  }
  const authz = headers.authorization;
  if (typeof authz === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authz);
    if (!m) return { ok: false, message: 'Authorization header must be "Bearer <JWT>"' };
    if (!config.jwt) return { ok: false, message: 'bearer tokens are not accepted by this server' };
    const r = await verifyJwt(m[1], config.jwt, Math.floor(nowMs / 1000));
    if (!r.ok) return { ok: false, message: r.reason };
    const tenantId = tenantClaim(r.claims);
    if (!tenantId) return { ok: false, message: 'token has no tenant claim (tenant_id, tenantId or org_id)' };
    const sub = typeof r.claims.sub === 'string' && r.claims.sub !== '' ? r.claims.sub : tenantId;
    return { ok: true, client: { id: `jwt:${sub}`, tenantId } };
  }
  return { ok: false, message: 'missing credentials: send X-Service-Secret or Authorization: Bearer <JWT>' };
}

/** Whether the client may act for this tenant (a JWT is bound to its tenant claim). */
export function mayActFor(client: Client, tenantId: string): boolean {
  return client.tenantId === null || client.tenantId === tenantId;
}
