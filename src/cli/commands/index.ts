import type { Command } from 'commander';
import { register as demo } from './demo.js';
import { register as migrate } from './migrate.js';
import { register as ingest } from './ingest.js';
import { register as record } from './record.js';
import { register as catalog } from './catalog.js';
import { register as tenant } from './tenant.js';
import { register as subscribe } from './subscribe.js';
import { register as subscription } from './subscription.js';
import { register as quota } from './quota.js';
import { register as overage } from './overage.js';
import { register as invoice } from './invoice.js';
import { register as verify } from './verify.js';
import { register as run } from './run.js';
import { register as daemon } from './daemon.js';
import { register as status } from './status.js';
import { register as backup } from './backup.js';
import { register as restore } from './restore.js';
import { register as audit } from './audit.js';
import { register as retention } from './retention.js';
import { register as check } from './check.js';
import { register as aggregate } from './aggregate.js';
import { register as report } from './report.js';
import { register as history } from './history.js';
import { register as estimate } from './estimate.js';
import { register as stripe } from './stripe.js';
import { register as serve } from './serve.js';

// Each command file defines its options cheaply and lazy-imports its core module, so that
// `billing check` does not pay for stripe, ink or csv-parse.
const commands: Array<(program: Command) => void> = [demo, migrate, ingest, record, overage, catalog, tenant, subscribe, subscription, quota, invoice, verify, run, daemon, status, backup, restore, audit, retention, check, aggregate, report, history, estimate, stripe, serve];

export function registerAll(program: Command): void {
  for (const register of commands) register(program);
}
