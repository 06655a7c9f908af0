import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BillingError } from '../src/domain/errors.js';
import { loadDaemonConfig } from '../src/jobs/schedules.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';

function configFile(content: unknown): string {
  const file = path.join(tempDir('billing-config-'), 'billing.config.json');
  writeFileSync(file, JSON.stringify(content));
  return file;
}

function messageOf(file: string): string {
  try {
    loadDaemonConfig(file, true);
  } catch (e) {
    expect(e).toBeInstanceOf(BillingError);
    expect((e as BillingError).code).toBe('usage');
    return (e as BillingError).message;
  }
  throw new Error('expected the config to be refused');
}

describe('billing.config.json', () => {
  it('refuses an unknown key anywhere, naming the file and the key path', () => {
    const top = configFile({ deamon: { timezone: 'UTC' } });
    expect(messageOf(top)).toBe(`${top}: unknown key "deamon" (use daemon)`);
    const inner = configFile({ daemon: { timezone: 'UTC', lockTtl: 30 } });
    expect(messageOf(inner)).toBe(
      `${inner}: unknown key "daemon.lockTtl" (use timezone, schedules, lockTtlSeconds, shutdownTimeoutSeconds, draftInvoices)`,
    );
  });

  it('accepts every known setting', () => {
    const file = configFile({ daemon: { timezone: 'Europe/Paris', schedules: { invoice: 'off' }, lockTtlSeconds: 30, shutdownTimeoutSeconds: 5, draftInvoices: true } });
    expect(loadDaemonConfig(file, true)).toMatchObject({ timezone: 'Europe/Paris', lockTtlMs: 30_000, shutdownTimeoutMs: 5000, draftInvoices: true });
    expect(loadDaemonConfig(file, true).schedules.invoice).toBeUndefined();
  });

  it('CLI: an unknown key is one line on stderr and exit code 2, before any database is opened', async () => {
    const dir = tempDir('billing-config-');
    const file = configFile({ daemon: { schedule: {} } });
    const r = await runCli(['status', '--config', file], { db: `sqlite:${path.join(dir, 'never.db')}` });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd().split('\n')).toEqual([
      `billing: ${file}: unknown key "daemon.schedule" (use timezone, schedules, lockTtlSeconds, shutdownTimeoutSeconds, draftInvoices)`,
    ]);
  });
});
