import type { Command } from 'commander';
import { register as migrate } from './migrate.js';
import { register as catalog } from './catalog.js';
import { register as tenant } from './tenant.js';
import { register as subscribe } from './subscribe.js';
import { register as subscription } from './subscription.js';
import { register as quota } from './quota.js';
import { register as overage } from './overage.js';

// Each command file defines its options cheaply and lazy-imports its core module, so that
// `billing check` does not pay for stripe, ink or csv-parse.
const commands: Array<(program: Command) => void> = [migrate, overage, catalog, tenant, subscribe, subscription, quota];

export function registerAll(program: Command): void {
  for (const register of commands) register(program);
}
