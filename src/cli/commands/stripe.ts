import type { Command } from 'commander';
import { optionalWholeNumber } from '../options.js';
import { ExitCode } from '../../domain/errors.js';
import { buildContext, withDb, type CliContext } from '../context.js';
import { printErr, printJson, printLine } from '../output.js';
import { formatTable } from '../../format/table.js';

// The Stripe SDK is loaded by the core modules imported inside each action, never here.

interface ClientOptions {
  concurrency?: string;
  rate?: string;
  timeout?: string;
}

interface SyncCliOptions extends ClientOptions {
  tenant?: string;
  dryRun?: boolean;
  maxAttempts?: string;
  dead?: boolean;
}

/** STRIPE_SECRET_KEY / STRIPE_API_BASE / STRIPE_WEBHOOK_SECRET, plus the client flags. */
async function stripeConfig(ctx: CliContext, opts: ClientOptions) {
  const { stripeConfigFromEnv } = await import('../../stripe/config.js');
  const overrides: Record<string, number> = {};
  const concurrency = optionalWholeNumber(opts.concurrency, '--concurrency', { min: 1 });
  const rate = optionalWholeNumber(opts.rate, '--rate', { min: 1 });
  const timeout = optionalWholeNumber(opts.timeout, '--timeout', { min: 1 });
  if (concurrency !== undefined) overrides.concurrency = concurrency;
  if (rate !== undefined) overrides.maxRequestsPerSecond = rate;
  if (timeout !== undefined) overrides.timeoutMs = timeout;
  return stripeConfigFromEnv(ctx.env, overrides);
}

function withClientOptions(cmd: Command): Command {
  return cmd
    .option('--concurrency <n>', 'Stripe calls in flight at once (default 4)')
    .option('--rate <n>', 'at most this many Stripe calls started per second (default 20)')
    .option('--timeout <ms>', 'per-request timeout in milliseconds (default 30000)');
}

type SyncReport = Awaited<ReturnType<(typeof import('../../stripe/sync.js'))['stripeSync']>>;

function printSyncReport(r: SyncReport): void {
  if (r.dryRun) {
    printLine(`dry run: ${r.planned.length} call(s) would be made; nothing was sent or changed`);
    for (const c of r.planned) printLine(`${c.method} ${c.path}  Idempotency-Key: ${c.idempotencyKey}\n  ${JSON.stringify(c.params)}`);
  } else {
    const q = r.queued;
    if (r.requeued) printLine(`re-queued ${r.requeued} failed row(s)`);
    printLine(`queued ${q.rows} call(s): ${q.customers} customer(s), ${q.invoices} invoice(s), ${q.voids} void(s), ${q.creditNotes} credit note(s), ${q.meterEvents} meter event(s)`);
    const sent = Object.entries(r.sent).map(([k, n]) => `${k} ${n}`);
    printLine(`sent: ${sent.length ? sent.join(', ') : 'nothing'}`);
    if (r.paid || r.paymentFailures) printLine(`payments: ${r.paid} paid, ${r.paymentFailures} declined (dunning started)`);
    printLine(`retry later ${r.retryLater}, failed ${r.failed}, dead ${r.dead}, waiting on other calls ${r.blocked}`);
  }
  if (r.postponed) printLine(`${r.postponed} meter event(s) not yet inside Stripe's timestamp window (sent by a later run)`);
  if (r.errors.length) {
    printLine(formatTable(['tenant', 'kind', 'ref', 'outcome', 'error'], r.errors.map((e) => [e.tenantId, e.kind, e.ref, e.outcome, e.message])));
  }
  for (const w of r.warnings) printErr(`warning: ${w}`);
}

/** Exit 3 (partial) when a call failed this run or anything still needs a person; the reason goes to stderr. */
async function syncExit(r: SyncReport): Promise<void> {
  const { problemsText } = await import('../../stripe/outbox.js');
  const text = problemsText(r.outstanding);
  if (text) printErr(`billing: ${text}`);
  process.exitCode = r.errors.length > 0 || text ? ExitCode.Partial : ExitCode.Ok;
}

async function readInput(file: string | undefined): Promise<Buffer> {
  const chunks: Buffer[] = [];
  if (!file || file === '-') {
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }
  const { readFile } = await import('node:fs/promises');
  try {
    return await readFile(file);
  } catch (e) {
    const { BillingError } = await import('../../domain/errors.js');
    throw new BillingError('usage', `cannot read ${file}: ${(e as Error).message}`);
  }
}

export function register(program: Command): void {
  const stripe = program
    .command('stripe')
    .description('push customers, invoices and meter events to Stripe; apply its webhooks; run dunning (STRIPE_SECRET_KEY)');
  registerStripeSync(stripe);
  registerStripeRetry(stripe);
  registerStripeStatus(stripe);
  registerStripeWebhook(stripe);
  registerStripeEvents(stripe);
  registerStripeDunning(stripe);
}

function registerStripeSync(stripe: Command): void {
  withClientOptions(
    stripe
      .command('sync')
      .description('queue what Stripe is missing (customers, open invoices, metered usage) and send the outbox')
      .option('--dry-run', 'print every call that would be made; send and change nothing')
      .option('--tenant <id>', 'only this tenant')
      .option('--max-attempts <n>', 'a call failing this many times becomes dead (default 8)'),
  ).action(async (opts: SyncCliOptions, cmd: Command) => {
    const ctx = buildContext(cmd);
    const config = await stripeConfig(ctx, opts);
    const maxAttempts = optionalWholeNumber(opts.maxAttempts, '--max-attempts', { min: 1 });
    const { stripeSync } = await import('../../stripe/sync.js');
    const r = await withDb(ctx, (db) =>
      stripeSync(db, { now: ctx.now, actor: ctx.actor, tenantId: opts.tenant, dryRun: opts.dryRun, stripe: config, maxAttempts }),
    );
    if (ctx.json) printJson(r);
    else printSyncReport(r);
    await syncExit(r);
  });
}

function registerStripeRetry(stripe: Command): void {
  withClientOptions(
    stripe
      .command('retry')
      .description('re-drive calls Stripe refused (and, with --dead, those given up on), then send everything due')
      .option('--tenant <id>', 'only this tenant')
      .option('--dead', 'also revive dead calls, with a fresh attempt budget')
      .option('--max-attempts <n>', 'a call failing this many times becomes dead (default 8)'),
  ).action(async (opts: SyncCliOptions, cmd: Command) => {
    const ctx = buildContext(cmd);
    const config = await stripeConfig(ctx, opts);
    const maxAttempts = optionalWholeNumber(opts.maxAttempts, '--max-attempts', { min: 1 });
    const { stripeRetry } = await import('../../stripe/sync.js');
    const r = await withDb(ctx, (db) =>
      stripeRetry(db, { now: ctx.now, actor: ctx.actor, tenantId: opts.tenant, includeDead: opts.dead, stripe: config, maxAttempts }),
    );
    if (ctx.json) printJson(r);
    else printSyncReport(r);
    await syncExit(r);
  });
}

function registerStripeStatus(stripe: Command): void {
  stripe
    .command('status')
    .description('calls still to send, refused (failed) or given up on (dead), and dunning under way')
    .option('--tenant <id>', 'only this tenant')
    .action(async (opts: { tenant?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { stripeStatus } = await import('../../stripe/sync.js');
      const s = await withDb(ctx, (db) => stripeStatus(db, { now: ctx.now, tenantId: opts.tenant }));
      if (ctx.json) {
        printJson(s);
        return;
      }
      const c = s.counts;
      printLine(`outbox: ${c.sent} sent, ${c.pending} pending (${s.due} due now), ${c.failed} failed, ${c.dead} dead`);
      if (s.rows.length) {
        printLine(formatTable(
          ['tenant', 'kind', 'ref', 'status', 'attempts', 'next attempt', 'last error'],
          s.rows.map((r) => [r.tenantId, r.kind, r.ref, r.status, r.attempts, r.nextAttemptAt, r.lastError]),
        ));
      }
      if (s.dunning.length) {
        printLine('dunning:');
        printLine(formatTable(
          ['tenant', 'invoice', 'retries done', 'next retry', 'last error'],
          s.dunning.map((d) => [d.tenantId, d.invoiceId, d.retriesDone, d.nextAttemptAt, d.lastError]),
        ));
      }
    });
}

function registerStripeWebhook(stripe: Command): void {
  stripe
    .command('webhook')
    .description('verify a Stripe webhook delivery (STRIPE_WEBHOOK_SECRET) and apply it once')
    .argument('[file]', 'the raw request body; "-" or nothing reads stdin')
    .requiredOption('--signature <header>', 'the Stripe-Signature header of the delivery')
    .option('--tolerance <seconds>', 'maximum age of the signature (default 300)')
    .action(async (file: string | undefined, opts: { signature: string; tolerance?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const tolerance = optionalWholeNumber(opts.tolerance, '--tolerance', { min: 1 });
      const payload = await readInput(file);
      const { verifyWebhook, applyStripeEvent } = await import('../../stripe/webhooks.js');
      const { stripeConfigFromEnv } = await import('../../stripe/config.js');
      // Verified before the database is even opened: a forged delivery touches nothing.
      const event = await verifyWebhook(payload, opts.signature, { secret: stripeConfigFromEnv(ctx.env).webhookSecret, now: ctx.now, toleranceSec: tolerance });
      const r = await withDb(ctx, (db) => applyStripeEvent(db, event, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson(r);
      else printLine(`${r.type} ${r.eventId}: ${r.outcome} (${r.detail})`);
    });
}

function registerStripeEvents(stripe: Command): void {
  withClientOptions(
    stripe.command('events').description('pull Stripe events since the stored cursor and apply them like webhooks'),
  ).action(async (opts: ClientOptions, cmd: Command) => {
    const ctx = buildContext(cmd);
    const config = await stripeConfig(ctx, opts);
    const { pullStripeEvents } = await import('../../stripe/webhooks.js');
    const r = await withDb(ctx, (db) => pullStripeEvents(db, { now: ctx.now, actor: ctx.actor, stripe: config }));
    if (ctx.json) printJson(r);
    else printLine(`fetched ${r.fetched} event(s): ${r.applied} applied, ${r.ignored} ignored, ${r.duplicates} already seen; cursor ${r.cursor ?? 'none'}`);
  });
}

function registerStripeDunning(stripe: Command): void {
  withClientOptions(
    stripe
      .command('dunning')
      .description('retry payments due as of --now (+0 h, +72 h, +144 h after a failure), then give up: uncollectible, past due')
      .option('--tenant <id>', 'only this tenant'),
  ).action(async (opts: ClientOptions & { tenant?: string }, cmd: Command) => {
    const ctx = buildContext(cmd);
    const config = await stripeConfig(ctx, opts);
    const { runDunning } = await import('../../stripe/dunning.js');
    const r = await withDb(ctx, (db) => runDunning(db, { now: ctx.now, actor: ctx.actor, stripe: config, tenantId: opts.tenant }));
    if (ctx.json) printJson(r);
    else {
      printLine(`dunning: ${r.attempted} retried, ${r.recovered} paid, ${r.declined} declined again, ${r.exhausted} uncollectible, ${r.closed} closed`);
      for (const e of r.errors) printErr(`billing: ${e.tenantId} ${e.invoiceId}: ${e.message}`);
    }
    process.exitCode = r.errors.length > 0 ? ExitCode.Partial : ExitCode.Ok;
  });
}
