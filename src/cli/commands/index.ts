import type { Command } from 'commander';

type Register = (program: Command) => void;

// One entry per command file, in help order. Only the invoked command's file is loaded, so
// `billing check` pays neither for the other commands nor for what they import.
const commands: Record<string, () => Promise<{ register: Register }>> = {
  demo: () => import('./demo.js'),
  migrate: () => import('./migrate.js'),
  ingest: () => import('./ingest.js'),
  record: () => import('./record.js'),
  overage: () => import('./overage.js'),
  catalog: () => import('./catalog.js'),
  tenant: () => import('./tenant.js'),
  subscribe: () => import('./subscribe.js'),
  subscription: () => import('./subscription.js'),
  quota: () => import('./quota.js'),
  discount: () => import('./discount.js'),
  tax: () => import('./tax.js'),
  credit: () => import('./credit.js'),
  'credit-note': () => import('./credit-note.js'),
  grant: () => import('./grant.js'),
  alert: () => import('./alert.js'),
  invoice: () => import('./invoice.js'),
  verify: () => import('./verify.js'),
  run: () => import('./run.js'),
  daemon: () => import('./daemon.js'),
  status: () => import('./status.js'),
  backup: () => import('./backup.js'),
  restore: () => import('./restore.js'),
  audit: () => import('./audit.js'),
  retention: () => import('./retention.js'),
  check: () => import('./check.js'),
  aggregate: () => import('./aggregate.js'),
  report: () => import('./report.js'),
  history: () => import('./history.js'),
  estimate: () => import('./estimate.js'),
  stripe: () => import('./stripe.js'),
  webhook: () => import('./webhook.js'),
  serve: () => import('./serve.js'),
  completion: () => import('./completion.js'),
};

const GLOBAL_OPTIONS_WITH_VALUE = new Set(['--db', '--config', '--now']);

/** The command named on the command line (skipping global options), if any. */
export function invokedCommand(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (GLOBAL_OPTIONS_WITH_VALUE.has(a)) i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

/** Register the invoked command alone, or every command (help, unknown names). */
export async function registerCommands(program: Command, args: string[]): Promise<void> {
  const name = invokedCommand(args);
  const only = name !== undefined && Object.hasOwn(commands, name) ? [commands[name]] : Object.values(commands);
  for (const load of await Promise.all(only.map((l) => l()))) load.register(program);
}
