import type { Command } from 'commander';
import { ExitCode } from '../../domain/errors.js';
import { toIso } from '../../domain/period.js';
import { formatTable } from '../../format/table.js';
import { buildContext, withDb } from '../context.js';
import { printErr, printJson, printLine } from '../output.js';

// The endpoint secret is write-only: no command here prints, audits or logs it.

export function register(program: Command): void {
  const hook = program.command('webhook').description('outgoing webhooks: signed event POSTs to your endpoints, with retries and redelivery');

  hook
    .command('add')
    .description('add an endpoint that receives events; prints its id')
    .argument('<url>', 'http(s) URL events are POSTed to')
    .option('--secret <s>', 'signing key (at least 16 characters) receivers verify Billing-Signature with; never shown again')
    .option('--events <types>', 'comma-separated event types to send (default: all, "*")')
    .action(async (url: string, opts: { secret?: string; events?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { addEndpoint } = await import('../../webhooks/endpoints.js');
      const ep = await withDb(ctx, (db) => addEndpoint(db, { url, secret: opts.secret, events: opts.events }, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson({ ...ep, createdAt: toIso(ep.createdAt) });
      else printLine(ep.id);
    });

  hook
    .command('list')
    .description('endpoints: id, URL, event filter (secrets are never shown)')
    .action(async (_opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { listEndpoints } = await import('../../webhooks/endpoints.js');
      const eps = await withDb(ctx, (db) => listEndpoints(db));
      if (ctx.json) {
        printJson(eps.map((e) => ({ ...e, createdAt: toIso(e.createdAt) })));
        return;
      }
      if (eps.length === 0) printLine('no webhook endpoints; add one with `billing webhook add URL --secret S`');
      else printLine(formatTable(['ID', 'URL', 'EVENTS', 'ENABLED', 'CREATED'], eps.map((e) => [e.id, e.url, e.events.join(','), e.enabled ? 'yes' : 'no', toIso(e.createdAt)])));
    });

  hook
    .command('remove')
    .description('remove an endpoint; its deliveries not yet made are dropped')
    .argument('<id>', 'endpoint id')
    .action(async (id: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { removeEndpoint } = await import('../../webhooks/endpoints.js');
      const r = await withDb(ctx, (db) => removeEndpoint(db, id, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson({ removed: r.endpoint.id, droppedDeliveries: r.dropped });
      else printLine(`removed ${r.endpoint.id} (${r.dropped} undelivered deliver${r.dropped === 1 ? 'y' : 'ies'} dropped)`);
    });

  hook
    .command('deliveries')
    .description('deliveries, newest first: status, attempts, last answer')
    .option('--failed', 'only deliveries given up on (dead letters)')
    .action(async (opts: { failed?: boolean }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { listDeliveries } = await import('../../webhooks/deliver.js');
      const rows = await withDb(ctx, (db) => listDeliveries(db, { failedOnly: opts.failed }));
      if (ctx.json) {
        printJson(rows);
        return;
      }
      if (rows.length === 0) printLine(opts.failed ? 'no failed deliveries' : 'no deliveries');
      else {
        printLine(
          formatTable(
            ['ID', 'EVENT', 'TYPE', 'ENDPOINT', 'STATUS', 'ATTEMPTS', 'NEXT / DELIVERED', 'LAST'],
            rows.map((r) => [r.id, r.event, r.type, r.endpoint, r.status, r.attempts, r.deliveredAt ?? r.nextAttemptAt ?? '', r.lastError ?? (r.lastStatusCode === null ? '' : String(r.lastStatusCode))]),
          ),
        );
      }
    });

  hook
    .command('redeliver')
    .description('send a delivery again (dead or delivered): pending and due now, the same event id and body')
    .argument('<id>', 'delivery id (from `billing webhook deliveries`)')
    .action(async (id: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { redeliver } = await import('../../webhooks/deliver.js');
      const r = await withDb(ctx, (db) => redeliver(db, id, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson({ id, before: r.before, status: 'pending' });
      else printLine(`${id} is pending again (was ${r.before}); \`billing webhook deliver\` sends it`);
    });

  hook
    .command('deliver')
    .description('send the deliveries due now (the `webhooks` stage of `billing run` and the daemon)')
    .action(async (_opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { deliverWebhooks } = await import('../../webhooks/deliver.js');
      const r = await withDb(ctx, (db) => deliverWebhooks(db, { now: ctx.now, clock: ctx.clock }));
      if (ctx.json) printJson(r);
      else {
        printLine(`delivered ${r.delivered} of ${r.attempted}; ${r.retryLater} to retry later, ${r.failed} failed for good`);
        for (const e of r.errors) printErr(`billing: webhook ${e.delivery} (${e.event} → ${e.endpoint}): ${e.message}`);
      }
      if (r.failed > 0) process.exitCode = ExitCode.Partial;
    });
}
