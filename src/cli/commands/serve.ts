import type { Command } from 'commander';
import { wholeNumber } from '../options.js';
import { buildContext, withDb } from '../context.js';

export function register(program: Command): void {
  program
    .command('serve')
    .description('HTTP API for entitlement checks and usage recording (auth: BILLING_SERVICE_SECRETS, BILLING_JWT_SECRET or BILLING_JWT_PUBLIC_KEY)')
    .option('--port <n>', 'TCP port (0 = any free port)', '8080')
    .option('--host <addr>', 'interface to listen on', '127.0.0.1')
    .option('--rate-limit <n>', 'requests per second per client (0 = no limit)', '500')
    .option('--rate-burst <n>', 'requests a client may send at once (default: 2 × rate limit)')
    .option('--body-limit <bytes>', 'largest request body accepted', String(1024 * 1024))
    .option('--request-timeout <ms>', 'deadline for receiving and handling one request', '30000')
    .option('--grace <ms>', 'on SIGTERM, how long in-flight requests get to finish', '10000')
    .action(async (opts: Record<string, string | undefined>, cmd: Command) => {
      const ctx = buildContext(cmd);
      const port = wholeNumber(opts.port!, '--port', { max: 65535 });
      const rate = wholeNumber(opts.rateLimit!, '--rate-limit');
      const burst = opts.rateBurst === undefined ? Math.max(1, rate * 2) : wholeNumber(opts.rateBurst, '--rate-burst', { min: 1 });
      const bodyLimitBytes = wholeNumber(opts.bodyLimit!, '--body-limit', { min: 1 });
      const requestTimeoutMs = wholeNumber(opts.requestTimeout!, '--request-timeout', { min: 1 });
      const graceMs = wholeNumber(opts.grace!, '--grace');
      const { authConfigFromEnv } = await import('../../serve/config.js');
      const auth = authConfigFromEnv(ctx.env);
      const { stripeConfigFromEnv } = await import('../../stripe/config.js');
      const stripeWebhookSecret = stripeConfigFromEnv(ctx.env).webhookSecret;
      const log = (entry: Record<string, unknown>) =>
        process.stdout.write(JSON.stringify({ time: new Date().toISOString(), ...entry }) + '\n');
      const stop = new AbortController();
      const onSignal = (signal: string) => {
        log({ level: 'info', msg: 'shutting down', signal });
        stop.abort();
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
      const { runServer } = await import('../../serve/run.js');
      await withDb(ctx, (db) =>
        runServer(
          db,
          {
            auth,
            clock: ctx.clock,
            backfillDays: ctx.backfillDays,
            bodyLimitBytes,
            requestTimeoutMs,
            rateLimit: rate > 0 ? { perSecond: rate, burst } : null,
            stripeWebhookSecret,
            log,
          },
          { port, host: opts.host!, graceMs, stop: stop.signal, onListening: (url) => log({ level: 'info', msg: 'listening', url, db: db.display }) },
        ),
      );
      log({ level: 'info', msg: 'stopped' });
    });
}
