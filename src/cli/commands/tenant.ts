import type { Command } from 'commander';
import { buildContext, withDb } from '../context.js';
import { printErr, printJson, printLine } from '../output.js';
import { formatTable } from '../../format/table.js';
import { BillingError, ExitCode } from '../../domain/errors.js';

export function register(program: Command): void {
  const tenant = program.command('tenant').description('create, import, show, update and list tenants (the customers being billed)');

  tenant
    .command('create')
    .description('create a tenant')
    .argument('<id>', 'tenant id: no whitespace, at most 128 characters')
    .option('--name <name>', 'display name')
    .option('--currency <code>', 'ISO 4217 currency its plans must be billed in (default: BILLING_DEFAULT_CURRENCY, else the config file\'s defaultCurrency, else any)')
    .action(async (id: string, opts: { name?: string; currency?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { createTenant } = await import('../../subscriptions/tenants.js');
      const currency = opts.currency ?? ctx.defaultCurrency();
      const t = await withDb(ctx, (db) => createTenant(db, { id, name: opts.name, currency }, { now: ctx.now, actor: ctx.actor }));
      const { toIso } = await import('../../domain/period.js');
      if (ctx.json) printJson({ ...t, createdAt: toIso(t.createdAt) });
      else printLine(`created tenant ${t.id}${t.name ? ` (${t.name})` : ''}${t.currency ? `, currency ${t.currency}` : ''}`);
    });

  tenant
    .command('list')
    .description('every tenant with its current subscription, plan and status')
    .action(async (_opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { listTenantOverview } = await import('../../subscriptions/tenants.js');
      const { toIso } = await import('../../domain/period.js');
      const rows = await withDb(ctx, (db) => listTenantOverview(db, { now: ctx.now }));
      if (ctx.json) {
        printJson(rows.map((r) => ({ ...r, createdAt: toIso(r.createdAt) })));
        return;
      }
      if (rows.length === 0) {
        printLine('no tenants (create one with `billing tenant create ID`)');
        return;
      }
      printLine(
        formatTable(
          ['tenant', 'name', 'currency', 'subscription', 'plan', 'status'],
          rows.map((r) => [r.id, r.name, r.currency, r.subscriptionId, r.planKey ? `${r.planKey} v${r.planVersion}` : null, r.status]),
        ),
      );
    });

  tenant
    .command('show')
    .description('one tenant: name, currency, its current subscription and plan, quota overrides')
    .argument('<id>', 'tenant id')
    .action(async (id: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { listTenantOverview } = await import('../../subscriptions/tenants.js');
      const { listQuotas } = await import('../../subscriptions/quota.js');
      const { toIso } = await import('../../domain/period.js');
      const [t, quotas] = await withDb(ctx, async (db) => {
        const found = (await listTenantOverview(db, { now: ctx.now, tenantId: id }))[0];
        if (!found) throw new BillingError('not_found', `tenant "${id}" does not exist (see \`billing tenant list\`)`);
        return [found, await listQuotas(db, id)] as const;
      });
      if (ctx.json) {
        printJson({ ...t, createdAt: toIso(t.createdAt), quotaOverrides: quotas });
        return;
      }
      printLine(`tenant ${t.id}${t.name ? ` (${t.name})` : ''}, created ${toIso(t.createdAt)}`);
      printLine(`currency: ${t.currency ?? '(any)'}`);
      printLine(t.subscriptionId ? `subscription: ${t.subscriptionId}, plan ${t.planKey} v${t.planVersion}, ${t.status}` : 'subscription: none');
      if (t.stripeCustomerId) printLine(`stripe customer: ${t.stripeCustomerId}`);
      for (const q of quotas) printLine(`quota override: ${q.featureKey} ${JSON.stringify(q)}`);
    });

  tenant
    .command('update')
    .description("change a tenant's name or currency")
    .argument('<id>', 'tenant id')
    .option('--name <name>', 'display name ("" clears it)')
    .option('--currency <code>', 'ISO 4217 currency its plans must be billed in')
    .option('--no-currency', 'any currency')
    .action(async (id: string, opts: { name?: string; currency?: string | false }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { updateTenant } = await import('../../subscriptions/tenants.js');
      const currency = opts.currency === false ? null : opts.currency;
      const t = await withDb(ctx, (db) => updateTenant(db, id, { name: opts.name, currency }, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson(t);
      else printLine(`updated tenant ${t.id}: name ${t.name ?? '(none)'}, currency ${t.currency ?? '(any)'}`);
    });

  tenant
    .command('import')
    .description('create tenants and their subscriptions from a CSV (with a header) or JSON-lines file, in one transaction')
    .argument('<file>', 'file, or - for stdin; fields: id, name, currency, plan, start, trial_days, tax_name, tax_rate, tax_inclusive, included.FEATURE (a quota override: a quantity or "unlimited")')
    .option('--dry-run', 'check and report, change nothing')
    .addHelpText(
      'after',
      `
A row whose tenant exists as described is left unchanged, so a rerun is a no-op. A bad row is
reported on stderr (file:line: field: reason) and the others are imported; exit 3 then.
`,
    )
    .action(async (file: string, opts: { dryRun?: boolean }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { fileInput, streamInput } = await import('../../ingest/source.js');
      const { readTableRecords } = await import('../../ingest/table-records.js');
      const { importTenants, IMPORT_FIELDS, IMPORT_QUOTA_FIELDS } = await import('../../subscriptions/import.js');
      if (file === '-' && process.stdin.isTTY) throw new BillingError('usage', 'stdin is a terminal: pipe a file in, or give its path');
      const input = file === '-' ? streamInput('-', process.stdin) : fileInput(file);
      const read = await readTableRecords(input, IMPORT_FIELDS, IMPORT_QUOTA_FIELDS);
      const result = await withDb(ctx, (db) => importTenants(db, read.records, { now: ctx.now, actor: ctx.actor, dryRun: opts.dryRun }));
      const rejected = [...read.unreadable, ...result.rejected].sort((a, b) => a.line - b.line);
      for (const r of rejected) printErr(`${input.label}:${r.line}: ${r.field ? `${r.field}: ` : ''}${r.message}`);
      if (read.records.length === 0 && rejected.length === 0) printErr(`${input.label}: no rows to import`);
      const summary = { created: result.created, subscribed: result.subscribed, unchanged: result.unchanged, rejected: rejected.length, dryRun: !!opts.dryRun };
      if (ctx.json) printJson(summary);
      else {
        const verb = opts.dryRun ? 'would create' : 'created';
        printLine(`${verb} ${summary.created} tenant(s) (${summary.subscribed} subscribed), ${summary.unchanged} unchanged, ${summary.rejected} rejected`);
      }
      process.exitCode = rejected.length > 0 ? ExitCode.Partial : ExitCode.Ok;
    });
}
