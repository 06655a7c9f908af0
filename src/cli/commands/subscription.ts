import type { Command } from 'commander';
import type { Segment } from '../../subscriptions/repository.js';
import { segmentJson, subscriptionJson } from '../../subscriptions/json.js';
import { BillingError } from '../../domain/errors.js';
import { parseInstant, toIso } from '../../domain/period.js';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';
import { formatTable } from '../../format/table.js';
import { formatPeriod } from '../../format/period.js';

/** `--at now|period-end|ISO`. */
function parseAt(raw: string | undefined): 'now' | 'period-end' | number | undefined {
  if (raw === undefined || raw === 'now' || raw === 'period-end') return raw;
  const t = parseInstant(raw);
  if (t === null) throw new BillingError('usage', `--at "${raw}" must be now, period-end or an ISO 8601 instant`);
  return t;
}


function segmentsTable(segments: Segment[]): string {
  return formatTable(
    ['seq', 'plan', 'version', 'starts', 'ends'],
    segments.map((s) => [s.seq, s.planKey, s.planVersion, toIso(s.startsAt), s.endsAt === null ? 'open' : toIso(s.endsAt)]),
  );
}

export function register(program: Command): void {
  const sub = program.command('subscription').description("inspect, change or cancel a tenant's subscription");

  sub
    .command('show')
    .description('subscription, status at --now, current period and plan segments')
    .argument('<tenant>', 'tenant id')
    .action(async (tenantId: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { describeSubscription } = await import('../../subscriptions/describe.js');
      const v = await withDb(ctx, (db) => describeSubscription(db, { tenantId }, { now: ctx.now }));
      if (ctx.json) {
        printJson({
          subscription: subscriptionJson(v.subscription),
          status: v.status,
          currentPeriod: v.currentPeriod && { start: toIso(v.currentPeriod.start), end: toIso(v.currentPeriod.end) },
          plan: v.current && { key: v.current.planKey, version: v.current.planVersion },
          segments: v.segments.map(segmentJson),
        });
        return;
      }
      const s = v.subscription;
      printLine(`${s.id} (tenant ${s.tenantId}): ${v.status}${v.current ? `, on ${v.current.planKey} v${v.current.planVersion}` : ''}`);
      printLine(`  billed per ${s.interval} in ${s.currency}, anchored ${toIso(s.anchorAt)}`);
      if (v.currentPeriod) printLine(`  current period ${formatPeriod(v.currentPeriod)}`);
      if (s.trialEndsAt !== null) printLine(`  trial ends ${toIso(s.trialEndsAt)}`);
      if (s.cancelAt !== null) printLine(`  ends ${toIso(s.cancelAt)}${s.canceledAt !== null ? ` (canceled ${toIso(s.canceledAt)})` : ' (cancellation scheduled)'}`);
      printLine('');
      printLine(segmentsTable(v.segments));
    });

  sub
    .command('change')
    .description('move to the current version of a plan: upgrades take effect now, downgrades at period end')
    .argument('<tenant>', 'tenant id')
    .argument('<plan>', 'plan key (the same plan moves to its current version)')
    .option('--at <when>', 'now | period-end | ISO instant (default: now for an upgrade, else period-end)')
    .action(async (tenantId: string, planKey: string, opts: { at?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const at = parseAt(opts.at);
      const { changePlan } = await import('../../subscriptions/lifecycle.js');
      const r = await withDb(ctx, (db) => changePlan(db, { tenantId, planKey, at }, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) {
        printJson({ subscription: subscriptionJson(r.subscription), changed: r.changed, effectiveAt: toIso(r.effectiveAt), segments: r.segments.map(segmentJson) });
        return;
      }
      if (!r.changed) {
        printLine(`${r.subscription.id} is already on ${planKey}; nothing to do`);
        return;
      }
      const when = r.effectiveAt <= ctx.now ? 'now' : `at ${toIso(r.effectiveAt)}`;
      printLine(`${r.subscription.id} moves to ${planKey} ${when}`);
      printLine(segmentsTable(r.segments));
    });

  sub
    .command('cancel')
    .description('end the subscription now or at the end of the current period (default)')
    .argument('<tenant>', 'tenant id')
    .option('--at <when>', 'now | period-end | ISO instant', 'period-end')
    .action(async (tenantId: string, opts: { at?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const at = parseAt(opts.at);
      const { cancelSubscription } = await import('../../subscriptions/lifecycle.js');
      const s = await withDb(ctx, (db) => cancelSubscription(db, { tenantId, at }, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson(subscriptionJson(s));
      else printLine(s.cancelAt! <= ctx.now ? `${s.id} canceled` : `${s.id} will end at ${toIso(s.cancelAt!)}`);
    });
}
