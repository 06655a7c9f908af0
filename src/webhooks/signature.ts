import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * `Billing-Signature: t=UNIX,v1=HEX(HMAC_SHA256(secret, "t.body"))` (DESIGN.md §15). The
 * timestamp is signed with the body, so a captured request cannot be replayed later than
 * the receiver's tolerance.
 */

export const SIGNATURE_HEADER = 'Billing-Signature';
export const DEFAULT_TOLERANCE_SECONDS = 300;

export function signatureHex(secret: string, t: number, body: string): string {
  return createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
}

export function signatureHeader(secret: string, t: number, body: string): string {
  return `t=${t},v1=${signatureHex(secret, t, body)}`;
}

/**
 * For receivers: true when `header` signs exactly `body` (the raw request text, before any
 * JSON parsing) with `secret`, and its timestamp is within toleranceSeconds (default 300) of `now` (epoch ms, e.g. Date.now()).
 */
export function verifyWebhook(
  body: string | Buffer,
  header: string | null | undefined,
  secret: string,
  opts: { toleranceSeconds?: number; now: number },
): boolean {
  if (!header) return false;
  let t: number | null = null;
  const sigs: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 't' && /^\d+$/.test(v)) t = Number(v);
    else if (k === 'v1' && /^[0-9a-f]{64}$/i.test(v)) sigs.push(v.toLowerCase());
  }
  if (t === null || sigs.length === 0) return false;
  const now = Math.floor(opts.now / 1000);
  if (Math.abs(now - t) > (opts.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS)) return false;
  const expected = Buffer.from(signatureHex(secret, t, typeof body === 'string' ? body : body.toString('utf8')), 'hex');
  return sigs.some((s) => timingSafeEqual(Buffer.from(s, 'hex'), expected));
}
