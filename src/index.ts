/**
 * The library API: the same core the CLI calls, for services that want metering and
 * entitlement checks in-process (`import { openDb, checkEntitlement } from 'billing'`).
 * Every function takes the database handle and an options object with `now`; nothing here
 * reads the clock or the environment.
 */
export { openDb, type Db, type Dialect } from './storage/db.js';
export { resolveDbUrl, DEFAULT_DB_URL } from './storage/url.js';
export { BillingError, EXIT, type ErrorCode } from './domain/errors.js';
export type { Feature, PlanFeature, PlanVersion, Pricing, QuotaOverride } from './domain/catalog.js';
export type { Instant, Period } from './domain/period.js';
export type { SellerDetails } from './domain/seller.js';
export { roundMoney, currencyDigits } from './domain/money.js';

export { applyCatalog } from './catalog/apply.js';
export { setQuota } from './subscriptions/quota.js';
export { createTenant } from './subscriptions/tenants.js';
export { subscribe, changePlan, cancelSubscription, effectiveStatus } from './subscriptions/lifecycle.js';

export { recordUsage, type UsageInput, type RecordResult } from './ingest/record.js';
export { ingest, type IngestOptions, type IngestSummary } from './ingest/ingest.js';
export { checkEntitlement, type CheckResult, type CheckReason } from './entitlements/check.js';

export { runAggregate } from './aggregate/aggregate.js';
export { priceBillable, rateUsage } from './rate/rate.js';
export { runOverage } from './rate/overage.js';
export { buildReport, type TenantReport, type FeatureReport } from './report/report.js';

export { generateInvoices, previewInvoice } from './invoice/generate.js';
export { finalizeInvoice, voidInvoice } from './invoice/lifecycle.js';
export { listInvoices } from './invoice/repository.js';
export { verifyInvoices } from './invoice/verify.js';

export { verifyWebhook } from './webhooks/signature.js';
export { emitEvent, EVENT_TYPES, type EventType, type NewEvent } from './webhooks/events.js';
