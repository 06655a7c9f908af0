import type { Command } from 'commander';
import type { CatalogChange } from '../../catalog/apply.js';
import type { PercentagePricing, PlanFeature, Pricing } from '../../domain/catalog.js';
import { optionalWholeNumber } from '../options.js';
import { buildContext, withDb } from '../context.js';
import { printErr, printJson, printLine } from '../output.js';
import { formatTable } from '../../format/table.js';

function describeChange(c: CatalogChange): string {
  if (c.action === 'new_version') return `new version ${c.version}`;
  if (c.kind === 'plan' && c.version !== undefined) return `${c.action} (version ${c.version})`;
  return c.action;
}

/** "1.3% + 2.00 per event, first 3 events / 250 free, per event 1.75..12". */
export function describePercentage(p: PercentagePricing): string {
  let s = `${p.rate}%${p.fixedFeePerEvent ? ` + ${p.fixedFeePerEvent}` : ''} per event`;
  const free = [p.freeEvents === undefined ? null : `${p.freeEvents} events`, p.freeAmount === undefined ? null : `amount ${p.freeAmount}`].filter((x) => x !== null);
  if (free.length > 0) s += `, free up to ${free.join(' and ')}`;
  if (p.perEventMin !== undefined) s += `, per-event min ${p.perEventMin}`;
  if (p.perEventMax !== undefined) s += `, per-event max ${p.perEventMax}`;
  return s;
}

function describePricing(p: Pricing | null): string {
  if (!p) return '';
  let s: string;
  if (p.model === 'per_unit') s = `${p.unitPrice}/unit`;
  else if (p.model === 'package') s = `${p.packagePrice} per ${p.size}`;
  else if (p.model === 'percentage') s = describePercentage(p);
  else if (p.model === 'graduated_percentage') {
    const tiers = p.tiers.map((t) => `${t.upTo === null ? 'rest' : `≤${t.upTo}`} @${t.rate}%${t.flatPrice ? ` +${t.flatPrice}` : ''}`);
    s = `${p.model}: ${tiers.join('; ')}`;
  } else {
    const tiers = p.tiers.map((t) => `${t.upTo === null ? 'rest' : `≤${t.upTo}`} @${t.unitPrice}${t.flatPrice ? ` +${t.flatPrice}` : ''}`);
    s = `${p.model}: ${tiers.join('; ')}`;
  }
  if (p.minimum) s += `, min ${p.minimum}`;
  if (p.maximum) s += `, max ${p.maximum}`;
  return s;
}

/** A feature priced by dimension: one row per prices entry, "FEATURE model=gpt-4" (DESIGN.md §14). */
function termsRows(pf: PlanFeature, isBoolean: boolean): Array<Array<string | null>> {
  if (!pf.dimension || !pf.prices) return [termsRow(pf, isBoolean)];
  return pf.prices.map((e) => termsRow({ ...pf, ...e, featureKey: `${pf.featureKey} ${pf.dimension}=${e.match}` }, isBoolean));
}

function termsRow(pf: PlanFeature, isBoolean: boolean): Array<string | null> {
  return [
    pf.featureKey,
    pf.enabled ? 'yes' : 'no',
    isBoolean ? '' : pf.included === null ? 'unlimited' : pf.included,
    pf.hardStop ? 'yes' : 'no',
    pf.limit,
    describePricing(pf.overage),
  ];
}

export function register(program: Command): void {
  const catalog = program.command('catalog').description('declare features and plans (format: docs/reference.md "Catalog files"; example: seeds/catalog.json) and inspect them');

  catalog
    .command('apply')
    .description('apply a catalog file (JSON, or YAML by .yaml/.yml extension); idempotent, prints a diff')
    .argument('<file>', 'catalog file')
    .option('--dry-run', 'validate and show what would change without writing')
    .action(async (file: string, opts: { dryRun?: boolean }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { applyCatalog } = await import('../../catalog/apply.js');
      const { readCatalogFile } = await import('../../catalog/load.js');
      const { BillingError } = await import('../../domain/errors.js');
      const input = await readCatalogFile(file);
      let result;
      try {
        result = await withDb(ctx, (db) => applyCatalog(db, input, { now: ctx.now, actor: ctx.actor, dryRun: opts.dryRun }));
      } catch (e) {
        if (!(e instanceof BillingError) || !Array.isArray(e.details)) throw e;
        const problems = e.details as Array<{ path: string; message: string }>;
        if (ctx.json) printJson({ error: e.code, file, problems });
        printErr(`billing: ${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}, nothing applied:`);
        for (const p of problems) printErr(`  ${p.path}: ${p.message}`);
        process.exitCode = e.exitCode;
        return;
      }
      if (ctx.json) {
        printJson({ file, dryRun: Boolean(opts.dryRun), ...result });
        return;
      }
      if (result.noop) {
        printLine('catalog unchanged');
        return;
      }
      const n = result.changes.length;
      printLine(opts.dryRun ? `dry run: ${n} change(s) would be applied (nothing written)` : `applied ${n} change(s) from ${file}`);
      for (const c of result.changes) {
        printLine(`  ${c.kind.padEnd(7)} ${c.key.padEnd(24)} ${describeChange(c)}`);
        for (const d of c.diff ?? []) printLine(`      ${d}`);
      }
    });

  catalog
    .command('show')
    .description("features and each plan's current version (or one plan version)")
    .option('--plan <key>', 'only this plan')
    .option('--version <n>', 'this version of --plan instead of the current one')
    .action(async (opts: { plan?: string; version?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const version = optionalWholeNumber(opts.version, '--version', { min: 1 });
      const { showCatalog } = await import('../../catalog/show.js');
      const view = await withDb(ctx, (db) =>
        showCatalog(db, { planKey: opts.plan, version }),
      );
      if (ctx.json) {
        printJson(view);
        return;
      }
      printLine('Features');
      printLine(
        formatTable(
          ['key', 'name', 'type', 'aggregation', 'unit', 'uniqueBy', 'stripeMeter'],
          view.features.map((f) => [f.key, f.name, f.type, f.type === 'boolean' ? '' : f.aggregation, f.unit, f.uniqueBy, f.stripeMeter]),
        ),
      );
      const booleans = new Set(view.features.filter((f) => f.type === 'boolean').map((f) => f.key));
      for (const p of view.plans) {
        printLine('');
        const extras = [
          p.minimumCommitment ? `, minimum commitment ${p.minimumCommitment}` : '',
          p.spendThreshold ? `, spend threshold ${p.spendThreshold}` : '',
        ].join('');
        printLine(`Plan ${p.planKey} v${p.version} "${p.name}": ${p.price} ${p.currency}/${p.interval}, trial ${p.trialDays} day(s)${extras}`);
        printLine(
          formatTable(
            ['feature', 'enabled', 'included', 'hardStop', 'limit', 'overage'],
            Object.values(p.features).flatMap((pf) => termsRows(pf, booleans.has(pf.featureKey))),
          ),
        );
      }
    });
}
