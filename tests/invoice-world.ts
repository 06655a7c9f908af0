import { expect } from 'vitest';
import type { Db } from '../src/storage/db.js';
import { applyCatalog } from '../src/catalog/apply.js';
import { createTenant } from '../src/subscriptions/tenants.js';
import { subscribe, changePlan, cancelSubscription } from '../src/subscriptions/lifecycle.js';
import { recordUsage } from '../src/ingest/record.js';
import { generateInvoices } from '../src/invoice/generate.js';
import { listInvoices } from '../src/invoice/repository.js';
import { verifyInvoices } from '../src/invoice/verify.js';
import type { Invoice } from '../src/invoice/types.js';

export const T = (iso: string) => Date.parse(iso);
const ACTOR = 'test';

/** The invoice tests' catalog: small, with every line kind reachable. */
export function catalog(basicPrice = '10.00') {
  return {
    features: [
      { key: 'OCR_SCAN', name: 'OCR scans', unit: 'scan', aggregation: 'sum' },
      { key: 'API_CALL', name: 'API calls', unit: 'call', aggregation: 'sum' },
      { key: 'STORAGE_GB', name: 'Storage', unit: 'GB', aggregation: 'max' },
    ],
    plans: [
      {
        key: 'basic', name: 'Basic', currency: 'USD', price: basicPrice, interval: 'month',
        features: { OCR_SCAN: { included: 100, overage: { model: 'per_unit', unitPrice: '0.05' } } },
      },
      {
        key: 'pro', name: 'Pro', currency: 'USD', price: '20.00', interval: 'month',
        features: {
          OCR_SCAN: { included: 1000, overage: { model: 'per_unit', unitPrice: '0.02' } },
          STORAGE_GB: { included: 5, overage: { model: 'graduated', tiers: [
            { upTo: 100, unitPrice: '0.10' }, { upTo: null, unitPrice: '0.05', flatPrice: '1.00' }] } },
        },
      },
      {
        key: 'starter', name: 'Starter', currency: 'USD', price: '29.00', interval: 'month', trialDays: 14,
        features: {
          OCR_SCAN: { included: 50, overage: { model: 'per_unit', unitPrice: '0.05' } },
          API_CALL: { included: 1000, overage: { model: 'per_unit', unitPrice: '0.001', minimum: '2.00' } },
        },
      },
      {
        key: 'annual', name: 'Annual', currency: 'USD', price: '120.00', interval: 'year',
        features: { OCR_SCAN: { included: 1000, overage: { model: 'per_unit', unitPrice: '0.01' } } },
      },
    ],
  };
}

/** Small builders over the real seams, each at an explicit instant. */
export function world(db: Db) {
  let n = 0;
  return {
    apply: (at: string, input: unknown = catalog()) => applyCatalog(db, input, { now: T(at), actor: ACTOR }),
    tenant: (at: string, id: string) => createTenant(db, { id }, { now: T(at), actor: ACTOR }),
    subscribe: (at: string, tenantId: string, planKey: string, trialDays?: number) =>
      subscribe(db, { tenantId, planKey, trialDays }, { now: T(at), actor: ACTOR }),
    change: (at: string, tenantId: string, planKey: string, when?: 'now' | 'period-end') =>
      changePlan(db, { tenantId, planKey, at: when }, { now: T(at), actor: ACTOR }),
    cancel: (at: string, tenantId: string, when: 'now' | 'period-end' = 'now') =>
      cancelSubscription(db, { tenantId, at: when }, { now: T(at), actor: ACTOR }),
    /** Usage ingested at `at` that occurred at `occurred` (earlier = late). */
    usage: async (at: string, tenantId: string, featureKey: string, quantity: string, occurred = at) => {
      const r = await recordUsage(db, [{ tenantId, featureKey, quantity, occurredAt: occurred, eventId: `e${++n}` }], { now: T(at) });
      expect(r[0].status).toBe('inserted');
    },
    generate: (at: string, extra: { tenantId?: string; finalize?: boolean; dryRun?: boolean } = {}) =>
      generateInvoices(db, { now: T(at), actor: ACTOR, ...extra }),
  };
}

/** An invoice as [tenant, period, lines as "kind key amount", total]: compact enough to compare whole. */
export function shape(inv: Pick<Invoice, 'tenantId' | 'period' | 'lines' | 'total'> | undefined) {
  if (!inv) return undefined;
  const day = (t: number) => new Date(t).toISOString().slice(0, 10);
  return [
    inv.tenantId,
    `${day(inv.period.start)}..${day(inv.period.end)}`,
    inv.lines.map((l) => `${l.kind} ${l.featureKey ?? `${l.planKey}@${l.planVersion}`} ${l.amount}`),
    inv.total,
  ];
}

export async function invoicesByNumber(db: Db): Promise<Invoice[]> {
  const all = await listInvoices(db);
  return all.sort((a, b) => a.number.localeCompare(b.number));
}

export async function expectVerified(db: Db): Promise<void> {
  const r = await verifyInvoices(db);
  expect(r.violations).toEqual([]);
  expect(r.ok).toBe(true);
}
