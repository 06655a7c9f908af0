import type { Command } from 'commander';
import { BillingError } from '../../domain/errors.js';
import { toIso } from '../../domain/period.js';
import { formatTable } from '../../format/table.js';
import type { AlertFiring, AlertKind, AlertRule } from '../../alerts/rules.js';
import { buildContext, withDb } from '../context.js';
import { oneOf } from '../options.js';
import { printJson, printLine } from '../output.js';

interface AddOptions {
  usagePercent?: string;
  of?: string;
  usage?: string;
  spend?: string;
  creditBelow?: string;
}

function ruleToJson(r: AlertRule) {
  return {
    id: r.id,
    tenant: r.tenantId,
    feature: r.featureKey,
    kind: r.kind,
    threshold: r.threshold,
    of: r.base,
    created: toIso(r.createdAt),
    removed: r.removedAt === null ? null : toIso(r.removedAt),
  };
}

import { firingToJson } from '../../alerts/rules.js';
export { firingToJson };

/** One line per firing, as `billing aggregate` and `billing alert list --fired` print it. */
export function firingLine(f: AlertFiring): string {
  const unit = f.currency ? ` ${f.currency}` : f.kind === 'usage_percent' ? '%' : '';
  return `alert ${f.ruleId} fired for ${f.tenantId}: ${f.description} (now ${f.value}${unit})`;
}

export function register(program: Command): void {
  const alert = program.command('alert').description("alert rules: hear when a tenant's usage, spend or prepaid credit crosses a line");

  alert
    .command('add')
    .description('watch a tenant (and feature) for one threshold; fires at most once per billing period; prints its id')
    .argument('<tenant>', 'tenant id')
    .argument('[feature]', 'metered feature key (usage rules need one; spend may have one)')
    .option('--usage-percent <p>', 'usage reaches P percent of the included quantity (or of the limit, with --of limit)')
    .option('--of <base>', 'with --usage-percent: included (default) | limit')
    .option('--usage <n>', 'usage reaches N units this period')
    .option('--spend <amount>', "the period's invoice so far (or the feature's charge) reaches AMOUNT in the plan's currency")
    .option('--credit-below <amount>', 'the prepaid credit balance falls below AMOUNT')
    .action(async (tenantId: string, featureKey: string | undefined, opts: AddOptions, cmd: Command) => {
      const ctx = buildContext(cmd);
      const given = (
        [
          ['usage_percent', opts.usagePercent],
          ['usage', opts.usage],
          ['spend', opts.spend],
          ['credit_below', opts.creditBelow],
        ] as Array<[AlertKind, string | undefined]>
      ).filter(([, v]) => v !== undefined);
      if (given.length !== 1) throw new BillingError('usage', 'give exactly one of --usage-percent, --usage, --spend, --credit-below');
      const [kind, threshold] = given[0];
      const base = opts.of === undefined ? undefined : oneOf(opts.of, '--of', ['included', 'limit'] as const);
      const { addAlertRule } = await import('../../alerts/rules.js');
      const rule = await withDb(ctx, (db) => addAlertRule(db, { tenantId, featureKey, kind, threshold: threshold!, base }, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson(ruleToJson(rule));
      else printLine(rule.id);
    });

  alert
    .command('list')
    .description('alert rules in force, or with --fired what fired (newest first)')
    .option('--tenant <id>', "one tenant's")
    .option('--fired', 'the firings: rule, period, when, and the value that crossed')
    .option('--all', 'with removed rules too')
    .action(async (opts: { tenant?: string; fired?: boolean; all?: boolean }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { listAlertRules, listFirings, describeRule } = await import('../../alerts/rules.js');
      if (opts.fired) {
        const firings = await withDb(ctx, (db) => listFirings(db, { tenantId: opts.tenant }));
        if (ctx.json) printJson(firings.map(firingToJson));
        else if (firings.length === 0) printLine('no alert has fired');
        else
          printLine(
            formatTable(
              ['fired', 'tenant', 'rule', 'alert', 'value', 'period'],
              firings.map((f) => [toIso(f.firedAt), f.tenantId, f.ruleId, f.description, `${f.value}${f.currency ? ` ${f.currency}` : ''}`, `${toIso(f.periodStart)} – ${toIso(f.periodEnd)}`]),
            ),
          );
        return;
      }
      const rules = await withDb(ctx, (db) => listAlertRules(db, { tenantId: opts.tenant, all: opts.all }));
      if (ctx.json) printJson(rules.map(ruleToJson));
      else if (rules.length === 0) printLine('no alert rules');
      else
        printLine(
          formatTable(
            ['rule', 'tenant', 'alert', 'created', 'removed'],
            rules.map((r) => [r.id, r.tenantId, describeRule(r), toIso(r.createdAt), r.removedAt === null ? '' : toIso(r.removedAt)]),
          ),
        );
    });

  alert
    .command('remove')
    .description('stop evaluating a rule; what it fired stays in the history')
    .argument('<id>', 'rule id')
    .action(async (id: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { removeAlertRule } = await import('../../alerts/rules.js');
      const rule = await withDb(ctx, (db) => removeAlertRule(db, id, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson(ruleToJson(rule));
      else printLine(`removed ${rule.id} of ${rule.tenantId}`);
    });
}
