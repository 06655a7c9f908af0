import { randomBytes } from 'node:crypto';
import { dec, decStr } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import { toIso, type Instant } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { withTx } from '../storage/sql.js';

// Alert rules (DESIGN.md §15): what a tenant's usage, spend or prepaid balance is watched for.
// Evaluated by alerts/evaluate.ts; a rule fires at most once per billing period.

export type AlertKind = 'usage_percent' | 'usage' | 'spend' | 'credit_below';
export type PercentBase = 'included' | 'limit';

export interface AlertRule {
  id: string;
  tenantId: string;
  featureKey: string | null;
  kind: AlertKind;
  /** Percent (usage_percent), units (usage) or a major-unit amount (spend, credit_below). */
  threshold: string;
  /** usage_percent only: what the percentage is of. */
  base: PercentBase | null;
  createdAt: Instant;
  removedAt: Instant | null;
}

export interface AlertRuleInput {
  tenantId: string;
  featureKey?: string;
  kind: AlertKind;
  threshold: string;
  base?: PercentBase;
}

export function alertRuleFromRow(r: Record<string, any>): AlertRule {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    featureKey: r.feature_key ?? null,
    kind: r.kind,
    threshold: r.threshold,
    base: r.base ?? null,
    createdAt: Number(r.created_at),
    removedAt: r.removed_at === null || r.removed_at === undefined ? null : Number(r.removed_at),
  };
}

const NUMBER = /^\d{1,15}(\.\d{1,6})?$/;

/** One line an operator reads: what the rule watches. */
export function describeRule(r: Pick<AlertRule, 'kind' | 'threshold' | 'base' | 'featureKey'>): string {
  const what = r.featureKey ?? 'all features';
  switch (r.kind) {
    case 'usage_percent':
      return `${r.featureKey} usage reaches ${r.threshold}% of ${r.base ?? 'included'}`;
    case 'usage':
      return `${r.featureKey} usage reaches ${r.threshold}`;
    case 'spend':
      return `period spend on ${what} reaches ${r.threshold}`;
    case 'credit_below':
      return `prepaid credit falls below ${r.threshold}`;
  }
}

/** `billing alert add`: a rule on one tenant (and feature, for usage rules). */
export async function addAlertRule(db: Db, input: AlertRuleInput, opts: { now: Instant; actor: string; id?: string }): Promise<AlertRule> {
  const flag = { usage_percent: '--usage-percent', usage: '--usage', spend: '--spend', credit_below: '--credit-below' }[input.kind];
  if (!NUMBER.test(input.threshold) || dec(input.threshold).lte(0)) {
    throw new BillingError('invalid_input', `${flag} "${input.threshold}" must be a positive decimal, like "80" or "500.00"`);
  }
  const needsFeature = input.kind === 'usage_percent' || input.kind === 'usage';
  if (needsFeature && input.featureKey === undefined) throw new BillingError('usage', `${flag} needs a FEATURE: usage is measured per feature`);
  if (input.kind === 'credit_below' && input.featureKey !== undefined) throw new BillingError('usage', '--credit-below takes no FEATURE: the prepaid balance is per tenant');
  if (input.base !== undefined && input.kind !== 'usage_percent') throw new BillingError('usage', '--of only applies to --usage-percent');
  return withTx(db, async (trx) => {
    const tenant = await trx('tenants').where({ id: input.tenantId }).first();
    if (!tenant) throw new BillingError('not_found', `unknown tenant "${input.tenantId}" (create it with \`billing tenant create\`)`);
    if (input.featureKey !== undefined) {
      const feature = await trx('features').where({ key: input.featureKey }).first();
      if (!feature) throw new BillingError('not_found', `unknown feature "${input.featureKey}" (see \`billing catalog show\`)`);
      if (feature.type !== 'metered') throw new BillingError('invalid_input', `feature "${input.featureKey}" is ${feature.type}: only metered features have usage to watch`);
    }
    const row = {
      tenant_id: input.tenantId,
      id: opts.id ?? `al_${randomBytes(8).toString('hex')}`,
      feature_key: input.featureKey ?? null,
      kind: input.kind,
      threshold: decStr(dec(input.threshold)),
      base: input.kind === 'usage_percent' ? (input.base ?? 'included') : null,
      created_at: opts.now,
      removed_at: null,
    };
    await trx('alert_rules').insert(row);
    const rule = alertRuleFromRow(row);
    await writeAudit(trx, { at: opts.now, actor: opts.actor, tenantId: rule.tenantId, entity: 'alert_rule', entityId: rule.id, action: 'create', after: rule });
    return rule;
  });
}

/** `billing alert list`: rules (in force, or with --all also removed ones), oldest first. */
export async function listAlertRules(db: Db, opts: { tenantId?: string; all?: boolean } = {}): Promise<AlertRule[]> {
  const rows = await db
    .knex('alert_rules')
    .modify((b) => {
      if (opts.tenantId !== undefined) b.where('tenant_id', opts.tenantId);
      if (!opts.all) b.whereNull('removed_at');
    })
    .orderBy([{ column: 'created_at' }, { column: 'tenant_id' }, { column: 'id' }]);
  return rows.map(alertRuleFromRow);
}

/** `billing alert remove`: the rule stops being evaluated; its firings stay in the history. */
export async function removeAlertRule(db: Db, id: string, opts: { now: Instant; actor: string }): Promise<AlertRule> {
  return withTx(db, async (trx) => {
    const row = await trx('alert_rules').where({ id }).first();
    if (!row || row.removed_at !== null) {
      throw new BillingError('not_found', `no alert rule "${id}"${row ? ' (already removed)' : ''}; list them with \`billing alert list\``);
    }
    await trx('alert_rules').where({ tenant_id: row.tenant_id, id }).update({ removed_at: opts.now });
    const before = alertRuleFromRow(row);
    const after = { ...before, removedAt: opts.now };
    await writeAudit(trx, { at: opts.now, actor: opts.actor, tenantId: row.tenant_id, entity: 'alert_rule', entityId: id, action: 'delete', before, after });
    return after;
  });
}

export interface AlertFiring {
  tenantId: string;
  ruleId: string;
  featureKey: string | null;
  kind: AlertKind;
  description: string;
  periodStart: Instant;
  periodEnd: Instant;
  firedAt: Instant;
  value: string;
  threshold: string;
  currency: string | null;
}

/** A firing as `alert list --fired --json`, `aggregate --json` and the alert.triggered / credit.low events show it. */
export function firingToJson(f: AlertFiring) {
  return {
    tenant: f.tenantId,
    rule: f.ruleId,
    feature: f.featureKey,
    kind: f.kind,
    description: f.description,
    period: { start: toIso(f.periodStart), end: toIso(f.periodEnd) },
    fired: toIso(f.firedAt),
    value: f.value,
    threshold: f.threshold,
    currency: f.currency,
  };
}

/** `billing alert list --fired`: what fired, newest first. */
export async function listFirings(db: Db, opts: { tenantId?: string } = {}): Promise<AlertFiring[]> {
  const rows = await db
    .knex('alert_firings as f')
    .join('alert_rules as r', (j) => j.on('r.tenant_id', 'f.tenant_id').andOn('r.id', 'f.rule_id'))
    .modify((b) => {
      if (opts.tenantId !== undefined) b.where('f.tenant_id', opts.tenantId);
    })
    .select('f.*', 'r.feature_key', 'r.kind', 'r.base')
    .orderBy([{ column: 'f.fired_at', order: 'desc' }, { column: 'f.tenant_id' }, { column: 'f.rule_id' }]);
  return rows.map((r: Record<string, any>) => ({
    tenantId: r.tenant_id,
    ruleId: r.rule_id,
    featureKey: r.feature_key ?? null,
    kind: r.kind,
    description: describeRule({ kind: r.kind, threshold: r.threshold, base: r.base ?? null, featureKey: r.feature_key ?? null }),
    periodStart: Number(r.period_start),
    periodEnd: Number(r.period_end),
    firedAt: Number(r.fired_at),
    value: r.value,
    threshold: r.threshold,
    currency: r.currency ?? null,
  }));
}
