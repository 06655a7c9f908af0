import type { Command } from 'commander';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';

export function register(program: Command): void {
  program
    .command('migrate')
    .description('apply (up), roll back (down) or list (status) database migrations')
    .argument('[action]', 'up | down | status', 'up')
    .action(async (action: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { BillingError } = await import('../../domain/errors.js');
      if (!['up', 'down', 'status'].includes(action)) {
        throw new BillingError('usage', `unknown migrate action "${action}" (use up, down or status)`);
      }
      await withDb(
        ctx,
        async (db) => {
          if (action === 'up') {
            const [batch, applied] = await db.knex.migrate.latest();
            if (ctx.json) printJson({ batch, applied });
            else printLine(applied.length ? `applied ${applied.length} migration(s): ${applied.join(', ')}` : 'already up to date');
          } else if (action === 'down') {
            const [batch, rolled] = await db.knex.migrate.rollback();
            if (ctx.json) printJson({ batch, rolledBack: rolled });
            else printLine(rolled.length ? `rolled back: ${rolled.join(', ')}` : 'nothing to roll back');
          } else {
            const [done, pending] = (await db.knex.migrate.list()) as [Array<{ name: string } | string>, Array<{ file: string } | string>];
            const names = (xs: Array<{ name?: string; file?: string } | string>) =>
              xs.map((x) => (typeof x === 'string' ? x : (x.name ?? x.file ?? '')));
            if (ctx.json) printJson({ applied: names(done), pending: names(pending) });
            else {
              for (const n of names(done)) printLine(`applied  ${n}`);
              for (const n of names(pending)) printLine(`pending  ${n}`);
            }
          }
        },
        'none',
      );
    });
}
