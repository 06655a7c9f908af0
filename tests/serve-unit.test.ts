import { createHmac, generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { authenticate, mayActFor } from '../src/serve/auth.js';
import { authConfigFromEnv } from '../src/serve/config.js';
import { BillingError } from '../src/domain/errors.js';
import { Gate } from '../src/serve/gate.js';
import { apiWording, toHttpError } from '../src/serve/http-error.js';
import { verifyJwt } from '../src/serve/jwt.js';
import { RateLimiter } from '../src/serve/rate-limit.js';

const NOW_SEC = 1_768_478_400; // 2026-01-15T12:00:00Z
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

function hs256(claims: Record<string, unknown>, secret: string, header: Record<string, unknown> = { alg: 'HS256', typ: 'JWT' }): string {
  const data = `${b64(header)}.${b64(claims)}`;
  return `${data}.${createHmac('sha256', secret).update(data).digest('base64url')}`;
}

describe('verifyJwt', () => {
  const keys = { hmacSecret: 'jwt-secret' };

  it('accepts a valid HS256 token and returns its claims', async () => {
    const r = await verifyJwt(hs256({ sub: 'svc', tenant_id: 'acme', exp: NOW_SEC + 60 }, 'jwt-secret'), keys, NOW_SEC);
    expect(r).toEqual({ ok: true, claims: { sub: 'svc', tenant_id: 'acme', exp: NOW_SEC + 60 } });
  });

  it('rejects a wrong signature, expiry, nbf, alg none and algorithm confusion', async () => {
    expect(await verifyJwt(hs256({ tenant_id: 'acme' }, 'other'), keys, NOW_SEC)).toEqual({ ok: false, reason: 'invalid signature' });
    expect(await verifyJwt(hs256({ tenant_id: 'acme', exp: NOW_SEC }, 'jwt-secret'), keys, NOW_SEC)).toEqual({ ok: false, reason: 'token expired' });
    expect(await verifyJwt(hs256({ tenant_id: 'acme', nbf: NOW_SEC + 10, exp: NOW_SEC + 60 }, 'jwt-secret'), keys, NOW_SEC)).toEqual({ ok: false, reason: 'token not yet valid' });
    const none = `${b64({ alg: 'none' })}.${b64({ tenant_id: 'acme' })}.`;
    expect(await verifyJwt(none, keys, NOW_SEC)).toEqual({ ok: false, reason: 'algorithm "none" is not accepted' });
    // An RS256 header must not be checked against the HMAC secret (or vice versa).
    expect((await verifyJwt(hs256({ tenant_id: 'acme' }, 'jwt-secret', { alg: 'RS256' }), keys, NOW_SEC)).ok).toBe(false);
    expect(await verifyJwt('a.b', keys, NOW_SEC)).toEqual({ ok: false, reason: 'malformed token' });
    expect(await verifyJwt('e30.!!!.x', keys, NOW_SEC)).toEqual({ ok: false, reason: 'malformed token' });
  });

  it('refuses a token without exp (it would never expire) or with a non-numeric exp', async () => {
    expect(await verifyJwt(hs256({ sub: 'svc', tenant_id: 'acme' }, 'jwt-secret'), keys, NOW_SEC)).toEqual({
      ok: false,
      reason: 'token has no exp claim (expiry is required)',
    });
    expect(await verifyJwt(hs256({ tenant_id: 'acme', exp: String(NOW_SEC + 60) }, 'jwt-secret'), keys, NOW_SEC)).toEqual({ ok: false, reason: 'malformed exp claim' });
  });

  it('honours the clock tolerance, issuer and audience', async () => {
    const k = { ...keys, clockToleranceSec: 30, issuer: 'idp', audience: 'billing' };
    const claims = { tenant_id: 'acme', exp: NOW_SEC - 10, iss: 'idp', aud: ['x', 'billing'] };
    expect((await verifyJwt(hs256(claims, 'jwt-secret'), k, NOW_SEC)).ok).toBe(true);
    expect(await verifyJwt(hs256({ ...claims, iss: 'evil' }, 'jwt-secret'), k, NOW_SEC)).toEqual({ ok: false, reason: 'wrong issuer' });
    expect(await verifyJwt(hs256({ ...claims, aud: 'x' }, 'jwt-secret'), k, NOW_SEC)).toEqual({ ok: false, reason: 'wrong audience' });
  });

  it('verifies RS256 and ES256 with a PEM public key', async () => {
    const claims = { tenantId: 'acme', exp: NOW_SEC + 60 };
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rsData = `${b64({ alg: 'RS256' })}.${b64(claims)}`;
    const rsToken = `${rsData}.${sign('sha256', Buffer.from(rsData), rsa.privateKey).toString('base64url')}`;
    const rsKeys = { publicKeyPem: rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString() };
    expect((await verifyJwt(rsToken, rsKeys, NOW_SEC)).ok).toBe(true);
    // HS256 signed with the public key text (the classic confusion attack) is refused.
    expect((await verifyJwt(hs256(claims, rsKeys.publicKeyPem, { alg: 'HS256' }), rsKeys, NOW_SEC)).ok).toBe(false);

    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const esData = `${b64({ alg: 'ES256' })}.${b64(claims)}`;
    const esSig = sign('sha256', Buffer.from(esData), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
    const esKeys = { publicKeyPem: ec.publicKey.export({ type: 'spki', format: 'pem' }).toString() };
    expect((await verifyJwt(`${esData}.${esSig.toString('base64url')}`, esKeys, NOW_SEC)).ok).toBe(true);
    expect(await verifyJwt(`${esData}.${Buffer.alloc(64).toString('base64url')}`, esKeys, NOW_SEC)).toEqual({ ok: false, reason: 'invalid signature' });
    expect((await verifyJwt(rsToken, esKeys, NOW_SEC)).ok).toBe(false);
  });
});

describe('authenticate', () => {
  const config = { serviceSecrets: ['old-secret', 'new-secret'], jwt: { hmacSecret: 'jwt-secret' } };
  const nowMs = NOW_SEC * 1000;

  it('accepts every configured service secret (rotation) and names the client without the secret', async () => {
    expect(await authenticate({ 'x-service-secret': 'old-secret' }, config, nowMs)).toEqual({ ok: true, client: { id: 'service:1', tenantId: null } });
    expect(await authenticate({ 'x-service-secret': 'new-secret' }, config, nowMs)).toEqual({ ok: true, client: { id: 'service:2', tenantId: null } });
    expect(await authenticate({ 'x-service-secret': 'new-secre' }, config, nowMs)).toEqual({ ok: false, message: 'invalid service secret' });
    expect((await authenticate({}, config, nowMs)).ok).toBe(false);
  });

  it('binds a bearer token to its tenant claim', async () => {
    for (const claim of ['tenant_id', 'tenantId', 'org_id']) {
      const r = await authenticate({ authorization: `Bearer ${hs256({ sub: 'svc-a', [claim]: 'acme', exp: NOW_SEC + 60 }, 'jwt-secret')}` }, config, nowMs);
      expect(r).toEqual({ ok: true, client: { id: 'jwt:svc-a', tenantId: 'acme' } });
      if (r.ok) {
        expect(mayActFor(r.client, 'acme')).toBe(true);
        expect(mayActFor(r.client, 'globex')).toBe(false);
      }
    }
    const noTenant = await authenticate({ authorization: `Bearer ${hs256({ sub: 'x', exp: NOW_SEC + 60 }, 'jwt-secret')}` }, config, nowMs);
    expect(noTenant.ok).toBe(false);
    expect((await authenticate({ authorization: 'Basic abc' }, config, nowMs)).ok).toBe(false);
    expect(await authenticate({ authorization: `Bearer ${hs256({ tenant_id: 'a' }, 'jwt-secret')}` }, { serviceSecrets: ['s'] }, nowMs)).toEqual({
      ok: false,
      message: 'bearer tokens are not accepted by this server',
    });
  });

  it('reads credentials from the environment the CLI passes and refuses to run without any', () => {
    expect(authConfigFromEnv({ BILLING_SERVICE_SECRETS: ' a, b ,,' }).serviceSecrets).toEqual(['a', 'b']);
    expect(() => authConfigFromEnv({})).toThrow(/no credentials configured/);
    expect(() => authConfigFromEnv({ BILLING_JWT_PUBLIC_KEY: 'not a pem' })).toThrow(/BILLING_JWT_PUBLIC_KEY is not usable/);
  });
});

describe('RateLimiter', () => {
  it('allows a burst, then refills at the sustained rate, per client', () => {
    let t = 0;
    const rl = new RateLimiter({ perSecond: 2, burst: 3 }, () => t);
    expect([rl.take('a'), rl.take('a'), rl.take('a')].every((r) => r.ok)).toBe(true);
    expect(rl.take('a')).toEqual({ ok: false, retryAfterSec: 1 });
    expect(rl.take('b').ok).toBe(true);
    t = 500; // half a second: one token back
    expect(rl.take('a').ok).toBe(true);
    expect(rl.take('a').ok).toBe(false);
    t = 60_000;
    expect([rl.take('a'), rl.take('a'), rl.take('a'), rl.take('a')].map((r) => r.ok)).toEqual([true, true, true, false]);
  });
});

describe('Gate', () => {
  it('runs at most `max` tasks at once and starts the rest in arrival order', async () => {
    const gate = new Gate(2);
    const started: number[] = [];
    const release: Array<() => void> = [];
    let active = 0;
    let peak = 0;
    const tasks = Array.from({ length: 5 }, (_, i) =>
      gate.run(async () => {
        started.push(i);
        peak = Math.max(peak, ++active);
        await new Promise<void>((r) => release.push(r));
        active--;
        return i;
      }),
    );
    const tick = () => new Promise((r) => setImmediate(r));
    await tick();
    expect(started).toEqual([0, 1]);
    expect(gate.queued).toBe(3);
    release[1]();
    await tick();
    expect(started).toEqual([0, 1, 2]);
    while (release.length < 5 || started.length < 5) {
      release.forEach((r) => r());
      await tick();
    }
    release.forEach((r) => r());
    expect(await Promise.all(tasks)).toEqual([0, 1, 2, 3, 4]);
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect(peak).toBe(2);
    expect(gate.queued).toBe(0);
  });

  it('frees the slot when a task fails', async () => {
    const gate = new Gate(1);
    await expect(gate.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await gate.run(async () => 'next')).toBe('next');
  });
});

describe('toHttpError', () => {
  it('keeps the machine code and status, and never sends the CLI hint', () => {
    const e = toHttpError(new BillingError('not_found', 'tenant "x" does not exist', undefined, { hint: 'see `billing tenant list`' }));
    expect([e.status, e.code, e.message]).toEqual([404, 'not_found', 'tenant "x" does not exist']);
    expect(toHttpError(new Error('select * from secrets'))).toMatchObject({ status: 500, code: 'internal', message: 'internal error' });
  });

  it('words core messages that still carry CLI advice for an API caller', () => {
    const cases: Array<[string, string]> = [
      ['unknown tenant "x" (create it with `billing tenant create x`)', 'unknown tenant "x"'],
      ['no invoice "INV-9"; list them with `billing invoice list`', 'no invoice "INV-9"'],
      ['tenant "x" already has subscription s1 until 2026-03-01T00:00:00.000Z; use `billing subscription change` to move it to another plan', 'tenant "x" already has subscription s1 until 2026-03-01T00:00:00.000Z'],
      ['tenant "x" has no currency yet: subscribe it to a plan or set one with `billing tenant update --currency`', 'tenant "x" has no currency yet'],
      ['--period "2026-13" is not current, previous or YYYY-MM (e.g. 2026-03)', 'period "2026-13" is not current, previous or YYYY-MM (e.g. 2026-03)'],
      ['quantity must be a number or a decimal string', 'quantity must be a number or a decimal string'],
    ];
    for (const [core, api] of cases) {
      expect(apiWording(core)).toBe(api);
      expect(toHttpError(new BillingError('usage', core)).message).toBe(api);
    }
  });
});
