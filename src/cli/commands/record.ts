import type { Command } from 'commander';
import { ExitCode } from '../../domain/errors.js';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';

interface RecordFlags {
  tenant: string;
  feature: string;
  quantity?: string;
  sourceService?: string;
  sourceEntity?: string;
  eventId?: string;
  time?: string;
  user?: string;
  metadata?: string;
}

export function register(program: Command): void {
  program
    .command('record')
    .description('record one usage event (same rules as ingest)')
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--feature <key>', 'feature key')
    .option('--quantity <n>', 'quantity (default 1)')
    .option('--source-service <name>', 'service that reports the usage')
    .option('--source-entity <id>', 'entity in that service the usage is about')
    .option('--event-id <id>', 'idempotency: an event id unique per tenant')
    .option('--time <iso>', 'when it happened: ISO 8601 with offset or epoch s/ms (default: now)')
    .option('--user <id>', 'user id')
    .option('--metadata <json>', 'JSON object')
    .action(async (f: RecordFlags, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { recordUsage } = await import('../../ingest/record.js');
      const [result] = await withDb(ctx, (db) =>
        recordUsage(
          db,
          [
            {
              tenantId: f.tenant,
              featureKey: f.feature,
              quantity: f.quantity,
              sourceService: f.sourceService,
              sourceEntityId: f.sourceEntity,
              eventId: f.eventId,
              occurredAt: f.time,
              userId: f.user,
              metadata: f.metadata, // validated like a CSV cell: must be a JSON object
            },
          ],
          { now: ctx.now, backfillDays: ctx.backfillDays },
        ),
      );
      if (ctx.json) printJson(result);
      else if (result.status === 'rejected') printLine(`rejected: ${result.field}: ${result.reason}`);
      else printLine(`${result.status} (key ${result.idempotencyKey})`);
      process.exitCode = result.status === 'rejected' ? ExitCode.Partial : ExitCode.Ok;
    });
}
