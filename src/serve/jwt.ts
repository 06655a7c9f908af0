import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { decodeProtectedHeader, errors, jwtVerify, type JWTPayload } from 'jose';

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

type Alg = 'HS256' | 'RS256' | 'ES256';

/** The allow-list: one algorithm per configured key, so a header cannot pick the key type. */
type PreparedKeys = Map<Alg, KeyObject>;

const prepared = new WeakMap<JwtKeys, PreparedKeys>();

function prepare(keys: JwtKeys): PreparedKeys {
  let p = prepared.get(keys);
  if (p) return p;
  p = new Map();
  if (keys.hmacSecret) p.set('HS256', createSecretKey(Buffer.from(keys.hmacSecret, 'utf8')));
  if (keys.publicKeyPem) {
    const key = createPublicKey(keys.publicKeyPem);
    if (key.asymmetricKeyType === 'rsa') p.set('RS256', key);
    else if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') p.set('ES256', key);
    else throw new Error('JWT public key must be RSA (RS256) or EC P-256 (ES256)');
  }
  prepared.set(keys, p);
  return p;
}

/** Throws when the configured public key is unusable, so a bad deployment fails at start. */
export function validateJwtKeys(keys: JwtKeys): void {
  prepare(keys);
}

const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Our messages for jose's claim failures (they reach the client in the 401 body). */
function claimReason(e: errors.JWTClaimValidationFailed): string {
  if (e.claim === 'exp') return e.reason === 'missing' ? 'token has no exp claim (expiry is required)' : 'malformed exp claim';
  if (e.claim === 'nbf') return e.reason === 'check_failed' ? 'token not yet valid' : 'malformed nbf claim';
  if (e.claim === 'iss') return 'wrong issuer';
  if (e.claim === 'aud') return 'wrong audience';
  return `invalid ${e.claim} claim`;
}

/** Verify a compact JWS (HS256 / RS256 / ES256) with jose: signature, exp (required), nbf, issuer and audience. */
export async function verifyJwt(token: string, keys: JwtKeys, nowSec: number): Promise<JwtResult> {
  if (!COMPACT.test(token)) return { ok: false, reason: 'malformed token' };
  let alg: unknown;
  try {
    alg = decodeProtectedHeader(token).alg;
  } catch {
    return { ok: false, reason: 'malformed token' };
  }
  const k = prepare(keys);
  const key = k.get(alg as Alg);
  if (!key) return { ok: false, reason: `algorithm ${JSON.stringify(alg)} is not accepted` };
  try {
    const { payload } = await jwtVerify(token, key, {
      algorithms: [alg as Alg],
      // A token without exp would be valid forever once leaked: exp is required.
      requiredClaims: ['exp'],
      issuer: keys.issuer,
      audience: keys.audience,
      clockTolerance: keys.clockToleranceSec ?? 0,
      currentDate: new Date(nowSec * 1000),
    });
    return { ok: true, claims: payload as JWTPayload & Record<string, unknown> };
  } catch (e) {
    if (e instanceof errors.JWTExpired) return { ok: false, reason: 'token expired' };
    if (e instanceof errors.JWTClaimValidationFailed) return { ok: false, reason: claimReason(e) };
    if (e instanceof errors.JWSSignatureVerificationFailed) return { ok: false, reason: 'invalid signature' };
    if (e instanceof errors.JOSEError) return { ok: false, reason: 'malformed token' };
    throw e;
  }
}
