import type { Command } from 'commander';
import { buildContext } from '../context.js';

export const DEMO_DB_FILE = './billing-demo.db';

export function register(program: Command): void {
  program
    .command('demo')
    .description('seed a fresh SQLite database with the demo catalog, tenants and usage, and run the whole pipeline')
    .option('--keep', 'keep an existing demo database instead of starting fresh (fails if it has data)')
    .addHelpText('after', `\nUses ${DEMO_DB_FILE} (recreated each run) unless --db or BILLING_DATABASE_URL names an empty database.\nThe clock is the fixtures' "today" (seeds/tenants.json) unless --now is given.`)
    .action(async (opts: { keep?: boolean }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const explicitDb = ctx.dbExplicit;
      const dbUrl = explicitDb ? ctx.dbUrl : `sqlite:${DEMO_DB_FILE}`;
      if (!explicitDb && !opts.keep) {
        const { rmSync } = await import('node:fs');
        for (const suffix of ['', '-wal', '-shm']) rmSync(`${DEMO_DB_FILE}${suffix}`, { force: true });
      }
      const { runDemo, loadDemoSeeds, demoNow } = await import('../../demo/run-demo.js');
      const { printDemo } = await import('../../demo/print-demo.js');
      const { openDb } = await import('../../storage/db.js');
      const now = ctx.pinnedNow ?? demoNow(loadDemoSeeds());
      const db = await openDb(dbUrl, 'fresh');
      try {
        const out = (s: string) => process.stdout.write(s + '\n');
        const result = await runDemo(db, {
          now,
          actor: 'demo',
          onStep: ctx.json ? undefined : (title, lines) => {
            out(`\n$ billing ${title}`);
            for (const l of lines) out(`  ${l}`);
          },
        });
        if (ctx.json) out(JSON.stringify(result, null, 2));
        else printDemo(result, { dbUrl: db.display, now, out });
      } finally {
        await db.close();
      }
    });
}
