import { createHmac, createPublicKey, timingSafeEqual, verify, type KeyObject } from 'node:crypto';

/** Keys a deployment trusts; each key type allows exactly one algorithm (no `none`, ever). */
export interface JwtKeys {
  /** HS256 shared secret. */
  hmacSecret?: string;
  /** RS256 (RSA) or ES256 (P-256) public key, PEM. */
  publicKeyPem?: string;
  issuer?: string;
  audience?: string;
  /** Allowed clock skew for exp/nbf, seconds. */
  clockToleranceSec?: number;
}

export type JwtResult = { ok: true; claims: Record<string, unknown> } | { ok: false; reason: string };

interface PreparedKeys {
  hmac: Buffer | null;
  publicKey: KeyObject | null;
  publicAlg: 'RS256' | 'ES256' | null;
}

const prepared = new WeakMap<JwtKeys, PreparedKeys>();

function prepare(keys: JwtKeys): PreparedKeys {
  let p = prepared.get(keys);
  if (p) return p;
  let publicKey: KeyObject | null = null;
  let publicAlg: PreparedKeys['publicAlg'] = null;
  if (keys.publicKeyPem) {
    publicKey = createPublicKey(keys.publicKeyPem);
    if (publicKey.asymmetricKeyType === 'rsa') publicAlg = 'RS256';
    else if (publicKey.asymmetricKeyType === 'ec' && publicKey.asymmetricKeyDetails?.namedCurve === 'prime256v1') publicAlg = 'ES256';
    else throw new Error('JWT public key must be RSA (RS256) or EC P-256 (ES256)');
  }
  p = { hmac: keys.hmacSecret ? Buffer.from(keys.hmacSecret, 'utf8') : null, publicKey, publicAlg };
  prepared.set(keys, p);
  return p;
}

/** Throws when the configured public key is unusable, so a bad deployment fails at start. */
export function validateJwtKeys(keys: JwtKeys): void {
  prepare(keys);
}

function decodeJson(segment: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/** Verify a compact JWS (HS256 / RS256 / ES256), its exp (required), nbf and issuer/audience claims. */
export function verifyJwt(token: string, keys: JwtKeys, nowSec: number): JwtResult {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((s) => B64URL.test(s))) return { ok: false, reason: 'malformed token' };
  const [h, p, s] = parts;
  const header = decodeJson(h);
  const claims = decodeJson(p);
  if (!header || !claims) return { ok: false, reason: 'malformed token' };
  const alg = header.alg;
  const k = prepare(keys);
  const signed = Buffer.from(`${h}.${p}`, 'ascii');
  const sig = Buffer.from(s, 'base64url');
  let valid: boolean;
  if (alg === 'HS256' && k.hmac) {
    const expected = createHmac('sha256', k.hmac).update(signed).digest();
    valid = sig.length === expected.length && timingSafeEqual(sig, expected);
  } else if (alg === 'RS256' && k.publicAlg === 'RS256') {
    valid = verify('sha256', signed, k.publicKey!, sig);
  } else if (alg === 'ES256' && k.publicAlg === 'ES256') {
    // JWS carries ECDSA signatures as raw r||s, not DER.
    valid = sig.length === 64 && verify('sha256', signed, { key: k.publicKey!, dsaEncoding: 'ieee-p1363' }, sig);
  } else {
    return { ok: false, reason: `algorithm ${JSON.stringify(alg)} is not accepted` };
  }
  if (!valid) return { ok: false, reason: 'invalid signature' };

  const tolerance = keys.clockToleranceSec ?? 0;
  // A token without exp would be valid forever once leaked: exp is required.
  if (claims.exp === undefined) return { ok: false, reason: 'token has no exp claim (expiry is required)' };
  if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) return { ok: false, reason: 'malformed exp claim' };
  if (nowSec >= claims.exp + tolerance) return { ok: false, reason: 'token expired' };
  if (claims.nbf !== undefined) {
    if (typeof claims.nbf !== 'number') return { ok: false, reason: 'malformed nbf claim' };
    if (nowSec < claims.nbf - tolerance) return { ok: false, reason: 'token not yet valid' };
  }
  if (keys.issuer !== undefined && claims.iss !== keys.issuer) return { ok: false, reason: 'wrong issuer' };
  if (keys.audience !== undefined) {
    const aud = claims.aud;
    const auds = Array.isArray(aud) ? aud : [aud];
    if (!auds.includes(keys.audience)) return { ok: false, reason: 'wrong audience' };
  }
  return { ok: true, claims };
}
