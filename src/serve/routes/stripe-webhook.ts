import { HttpError } from '../http-error.js';
import type { Reply, RouteContext } from './types.js';

/**
 * POST /v1/billing/webhooks/stripe: authenticated by Stripe's signature over the raw body
 * (STRIPE_WEBHOOK_SECRET), not by service credentials; each event id is applied once.
 */
export async function stripeWebhookRoute(ctx: RouteContext): Promise<Reply> {
  if (!ctx.stripeWebhookSecret) {
    throw new HttpError(404, 'not_configured', 'Stripe webhooks are not enabled on this server; set STRIPE_WEBHOOK_SECRET');
  }
  const signature = ctx.req.headers['stripe-signature'];
  if (typeof signature !== 'string' || signature === '') {
    throw new HttpError(400, 'signature_invalid', 'missing Stripe-Signature header; nothing was applied');
  }
  const payload = ctx.body as Buffer;
  // The Stripe SDK loads only when a webhook actually arrives.
  const { verifyWebhook, applyStripeEvent } = await import('../../stripe/webhooks.js');
  const event = await verifyWebhook(payload, signature, { secret: ctx.stripeWebhookSecret, now: ctx.now });
  const applied = await applyStripeEvent(ctx.db, event, { now: ctx.now, actor: 'stripe:webhook' });
  return { status: 200, body: { received: true, ...applied } };
}
