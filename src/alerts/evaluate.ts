import type { Knex } from 'knex';
import { TenantTimeline } from '../aggregate/windows.js';
import { checkEntitlement, type CheckResult } from '../entitlements/check.js';
import { Decimal, dec, decStr } from '../domain/decimal.js';
import type { Instant } from '../domain/period.js';
import { buildEstimate, type TenantEstimate } from '../report/estimate.js';
import { loadTenantTerms } from '../rate/tenant-terms.js';
import type { Db } from '../storage/db.js';
import { rowsWritten, withTx } from '../storage/sql.js';
import { prepaidCredit } from '../subscriptions/credits.js';
import { alertRuleFromRow, describeRule, firingToJson, type AlertFiring, type AlertRule } from './rules.js';
import { emitEvent } from '../webhooks/events.js';

/** Called in the firing's own transaction, after its outgoing event is written. */
export type OnFired = (trx: Knex.Transaction, firing: AlertFiring) => Promise<void>;

interface Measured {
  value: string;
  currency: string | null;
}

/** What a tenant's rules are measured on at `now`, each read at most once. */
class TenantReadings {
  private estimate?: Promise<TenantEstimate>;
  private credit?: Promise<{ balance: string; currency: string } | null>;
  private checks = new Map<string, Promise<CheckResult>>();

  constructor(
    private readonly db: Db,
    private readonly tenantId: string,
    private readonly now: Instant,
  ) {}

  check(featureKey: string): Promise<CheckResult> {
    let c = this.checks.get(featureKey);
    if (!c) {
      // A feature priced by dimension: its usage over all values (each value's allowance is its own).
      c = checkEntitlement(this.db, { tenantId: this.tenantId, featureKey, quantity: '0', wholeFeature: true }, { now: this.now });
      this.checks.set(featureKey, c);
    }
    return c;
  }

  spend(): Promise<TenantEstimate> {
    this.estimate ??= buildEstimate(this.db, { now: this.now, tenantId: this.tenantId });
    return this.estimate;
  }

  prepaid() {
    this.credit ??= prepaidCredit(this.db.knex, this.tenantId, this.now);
    return this.credit;
  }
}

/** The rule's measure at `now` when it has crossed its threshold, else null. */
async function crossed(rule: AlertRule, read: TenantReadings): Promise<Measured | null> {
  const threshold = dec(rule.threshold);
  switch (rule.kind) {
    case 'usage': {
      const c = await read.check(rule.featureKey!);
      return dec(c.used).gte(threshold) ? { value: c.used, currency: null } : null;
    }
    case 'usage_percent': {
      const c = await read.check(rule.featureKey!);
      const base = rule.base === 'limit' ? c.limit : c.included;
      // Unlimited or nothing included: there is no percentage of it to reach.
      if (base === null || dec(base).lte(0)) return null;
      const percent = dec(c.used).times(100).div(base);
      return percent.gte(threshold) ? { value: decStr(percent.toDecimalPlaces(2, Decimal.ROUND_DOWN)), currency: null } : null;
    }
    case 'spend': {
      const e = await read.spend();
      if (e.invoice === null) return null; // no subscription: nothing is billed
      const amount = rule.featureKey === null ? e.invoice.total : (e.features.find((f) => f.featureKey === rule.featureKey)?.overageAmount ?? null);
      return amount !== null && dec(amount).gte(threshold) ? { value: amount, currency: e.currency } : null;
    }
    case 'credit_below': {
      const c = await read.prepaid();
      return c !== null && dec(c.balance).lt(threshold) ? { value: c.balance, currency: c.currency } : null;
    }
  }
}

/**
 * Evaluate the alert rules in force at `now` (DESIGN.md §15), run by the aggregate stage. A
 * rule that has crossed its threshold in the tenant's current billing period fires once for
 * that period: its firing is inserted under (tenant, rule, period start), so a rerun or a
 * second daemon adds nothing, and `onFired` runs in the transaction that inserted it.
 * Returns the firings this run added.
 */
export async function evaluateAlerts(db: Db, opts: { now: Instant; tenantId?: string; onFired?: OnFired }): Promise<AlertFiring[]> {
  const rows = await db
    .knex('alert_rules')
    .where('created_at', '<=', opts.now)
    .where((w) => w.whereNull('removed_at').orWhere('removed_at', '>', opts.now))
    .modify((b) => {
      if (opts.tenantId !== undefined) b.where('tenant_id', opts.tenantId);
    })
    .orderBy([{ column: 'tenant_id' }, { column: 'created_at' }, { column: 'id' }]);
  const byTenant = new Map<string, AlertRule[]>();
  for (const r of rows.map(alertRuleFromRow)) {
    if (!byTenant.has(r.tenantId)) byTenant.set(r.tenantId, []);
    byTenant.get(r.tenantId)!.push(r);
  }
  const terms = await loadTenantTerms(db.knex, [...byTenant.keys()]);
  const fired: AlertFiring[] = [];
  for (const [tenantId, rules] of byTenant) {
    const window = new TenantTimeline(terms.get(tenantId)?.subscriptions ?? []).windowAt(opts.now);
    // Rules that already fired this period are not measured again.
    const done = new Set(
      (await db.knex('alert_firings').where({ tenant_id: tenantId, period_start: window.start }).whereIn('rule_id', rules.map((r) => r.id)).select('rule_id')).map(
        (r: { rule_id: string }) => r.rule_id,
      ),
    );
    const read = new TenantReadings(db, tenantId, opts.now);
    const due: AlertFiring[] = [];
    for (const rule of rules.filter((r) => !done.has(r.id))) {
      const m = await crossed(rule, read);
      if (m === null) continue;
      due.push({
        tenantId,
        ruleId: rule.id,
        featureKey: rule.featureKey,
        kind: rule.kind,
        description: describeRule(rule),
        periodStart: window.start,
        periodEnd: window.end,
        firedAt: opts.now,
        value: m.value,
        threshold: rule.threshold,
        currency: m.currency,
      });
    }
    if (due.length === 0) continue;
    await withTx(db, async (trx) => {
      for (const f of due) {
        const res = await trx.raw(
          'INSERT INTO alert_firings (tenant_id, rule_id, period_start, period_end, fired_at, value, threshold, currency) ' +
            'VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
          [f.tenantId, f.ruleId, f.periodStart, f.periodEnd, f.firedAt, f.value, f.threshold, f.currency],
        );
        if (rowsWritten(db, res) === 0) continue; // another run fired it first
        // A low prepaid balance is its own event type; every other rule is alert.triggered.
        await emitEvent(trx, { type: f.kind === 'credit_below' ? 'credit.low' : 'alert.triggered', tenantId, data: firingToJson(f), at: opts.now });
        await opts.onFired?.(trx, f);
        fired.push(f);
      }
    });
  }
  return fired;
}
