import type { Command } from 'commander';
import { optionalInstant, wholeNumber } from '../options.js';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';
import { formatTable } from '../../format/table.js';

export function register(program: Command): void {
  program
    .command('audit')
    .description('show the audit log (catalog, subscription, quota, invoice, sync and restore changes)')
    .option('--tenant <id>', 'only this tenant')
    .option('--since <iso>', 'only entries at or after this instant')
    .option('--entity <name>', 'only this kind of entity (plan, subscription, invoice, ...)')
    .option('--limit <n>', 'the latest N entries (default 100)', '100')
    .action(async (opts: { tenant?: string; since?: string; entity?: string; limit: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const since = optionalInstant(opts.since, '--since');
      const limit = wholeNumber(opts.limit, '--limit', { min: 1 });
      const { listAudit } = await import('../../ops/audit.js');
      const rows = await withDb(ctx, (db) => listAudit(db, { tenantId: opts.tenant, since, entity: opts.entity, limit }));
      if (ctx.json) return printJson(rows);
      if (rows.length === 0) return printLine('no audit entries match');
      const short = (v: unknown) => {
        const s = v === null ? '' : JSON.stringify(v);
        return s.length > 60 ? `${s.slice(0, 57)}...` : s;
      };
      printLine(
        formatTable(
          ['AT', 'ACTOR', 'TENANT', 'ENTITY', 'ID', 'ACTION', 'AFTER'],
          rows.map((r) => [r.at, r.actor, r.tenantId, r.entity, r.entityId, r.action, short(r.after)]),
        ),
      );
    });
}
