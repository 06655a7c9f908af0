import { checkRoute, consumeRoute } from './entitlements.js';
import { healthRoute, metricsRoute } from './ops.js';
import { stripeWebhookRoute } from './stripe-webhook.js';
import type { Route } from './types.js';
import { recordRoute, summaryRoute } from './usage.js';

/**
 * Every route of `billing serve`; the path template is also the metrics label. Health and
 * metrics skip the queue so probes answer even when the API is saturated.
 */
export const ROUTES: Route[] = [
  { method: 'GET', path: '/health', auth: false, body: 'none', queued: false, handle: healthRoute },
  { method: 'GET', path: '/metrics', auth: false, body: 'none', queued: false, handle: metricsRoute },
  { method: 'POST', path: '/v1/billing/entitlements/check', auth: true, body: 'json', queued: true, handle: checkRoute },
  { method: 'POST', path: '/v1/billing/entitlements/consume', auth: true, body: 'json', queued: true, handle: consumeRoute },
  { method: 'POST', path: '/v1/billing/usage', auth: true, body: 'json', queued: true, handle: recordRoute },
  { method: 'GET', path: '/v1/billing/usage/:tenantId', auth: true, body: 'none', queued: true, handle: summaryRoute },
  { method: 'POST', path: '/v1/billing/webhooks/stripe', auth: false, body: 'raw', queued: true, handle: stripeWebhookRoute },
];
