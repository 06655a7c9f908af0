import type { Command } from 'commander';
import { buildContext, withDb } from '../context.js';

function int(name: string, raw: string, min: number): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min} (got "${raw}")`);
  return n;
}

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
      const { BillingError } = await import('../../domain/errors.js');
      let port: number, rate: number, burst: number, bodyLimitBytes: number, requestTimeoutMs: number, graceMs: number;
      try {
        port = int('--port', opts.port!, 0);
        if (port > 65535) throw new Error(`--port must be at most 65535 (got ${port})`);
        rate = int('--rate-limit', opts.rateLimit!, 0);
        burst = opts.rateBurst === undefined ? Math.max(1, rate * 2) : int('--rate-burst', opts.rateBurst, 1);
        bodyLimitBytes = int('--body-limit', opts.bodyLimit!, 1);
        requestTimeoutMs = int('--request-timeout', opts.requestTimeout!, 1);
        graceMs = int('--grace', opts.grace!, 0);
      } catch (e) {
        throw new BillingError('usage', (e as Error).message);
      }
      const { authConfigFromEnv } = await import('../../serve/config.js');
      const auth = authConfigFromEnv(ctx.env);
      const { stripeConfigFromEnv } = await import('../../stripe/config.js');
      const stripeWebhookSecret = stripeConfigFromEnv(ctx.env).webhookSecret;
      const fixedNow = cmd.optsWithGlobals().now ?? ctx.env.BILLING_NOW;
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
            clock: fixedNow ? () => ctx.now : Date.now,
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
