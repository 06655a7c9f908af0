import { checkRoute, consumeRoute } from './entitlements.js';
import { healthRoute, metricsRoute } from './ops.js';
import { stripeWebhookRoute } from './stripe-webhook.js';
import type { Route } from './types.js';
import { recordRoute, summaryRoute } from './usage.js';

/** Every route of `billing serve`; the path template is also the metrics label. */
export const ROUTES: Route[] = [
  { method: 'GET', path: '/health', auth: false, handle: healthRoute },
  { method: 'GET', path: '/metrics', auth: false, handle: metricsRoute },
  { method: 'POST', path: '/v1/billing/entitlements/check', auth: true, handle: checkRoute },
  { method: 'POST', path: '/v1/billing/entitlements/consume', auth: true, handle: (ctx) => consumeRoute(ctx) },
  { method: 'POST', path: '/v1/billing/usage', auth: true, handle: recordRoute },
  { method: 'GET', path: '/v1/billing/usage/:tenantId', auth: true, handle: summaryRoute },
  { method: 'POST', path: '/v1/billing/webhooks/stripe', auth: false, handle: stripeWebhookRoute },
];
