import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { tempDir } from './helpers/temp.js';
import { runCli } from './helpers/cli.js';
import { events, seedBulkSummaries, seedWorld, sleep, spawnBilling, until } from './jobs-support.js';
import { listJobRuns } from '../src/jobs/runs.js';
import { JOB_NAMES, type Stage } from '../src/jobs/stages.js';
import { startDaemon, type DaemonLogEntry } from '../src/jobs/daemon.js';
import { DEFAULT_DAEMON_CONFIG } from '../src/jobs/schedules.js';

/** A config running only the given jobs (default: overage), every second. */
function config(extra: Record<string, unknown> = {}, jobs: string[] = ['overage']): string {
  const dir = tempDir('billing-daemon-');
  const schedules: Record<string, string | null> = Object.fromEntries(JOB_NAMES.map((j) => [j, null]));
  for (const j of jobs) schedules[j] = '* * * * * *';
  const file = path.join(dir, 'billing.config.json');
  writeFileSync(file, JSON.stringify({ daemon: { schedules, shutdownTimeoutSeconds: 30, ...extra } }));
  return file;
}

const daemon = (url: string, file: string) => spawnBilling(['daemon', '--config', file, '--db', url]);
const isEvent = (event: string, more: (e: any) => boolean = () => true) => (l: string) => {
  if (!l.startsWith('{')) return false;
  const e = JSON.parse(l);
  return e.event === event && more(e);
};

describeEachDb('daemon', (t) => {
  it('two daemons on one database run each job once per tick, in pipeline order', async () => {
    const { db, url } = t();
    await seedWorld(db);
    const file = config({}, ['aggregate', 'overage']);
    const a = daemon(url, file);
    const b = daemon(url, file);
    await Promise.all([a.waitFor(isEvent('daemon.start')), b.waitFor(isEvent('daemon.start'))]);
    await sleep(4500);
    a.child.kill('SIGTERM');
    b.child.kill('SIGTERM');
    expect((await a.exited).code).toBe(0);
    expect((await b.exited).code).toBe(0);

    const runs = await listJobRuns(db, { limit: 1000 });
    const ticks = new Map<string, number>();
    for (const r of runs) ticks.set(`${r.job}@${r.scheduledAt}`, (ticks.get(`${r.job}@${r.scheduledAt}`) ?? 0) + 1);
    expect(runs.filter((r) => r.job === 'overage').length).toBeGreaterThanOrEqual(3);
    for (const [tick, n] of ticks) expect({ tick, n }).toEqual({ tick, n: 1 });
    expect(runs.every((r) => r.status === 'succeeded' && r.trigger === 'daemon')).toBe(true);
    // Within a tick, whichever daemon ran them, aggregate went before overage.
    for (const o of runs.filter((r) => r.job === 'overage')) {
      const a = runs.find((r) => r.job === 'aggregate' && r.scheduledAt === o.scheduledAt);
      if (a) expect(a.startedAt).toBeLessThanOrEqual(o.startedAt);
    }
    // Both daemons did some of the work or skipped the ticks the other had.
    const logged = [...events(a), ...events(b)];
    expect(logged.filter((e) => e.event === 'job.end').length).toBe(runs.length);
    for (const e of logged.filter((x) => x.event === 'job.end')) {
      expect(e).toMatchObject({ level: 'info', status: 'succeeded', counts: expect.any(Object) });
      expect(typeof e.duration_ms).toBe('number');
    }
    expect(logged.filter((e) => e.event === 'daemon.stop').map((e) => e.clean)).toEqual([true, true]);
  });

  it('SIGTERM during a long job lets it finish and commit, then exits 0', async () => {
    const { db, url } = t();
    await seedBulkSummaries(db, 12_000);
    const d = daemon(url, config());
    await d.waitFor(isEvent('job.start'));
    d.child.kill('SIGTERM');
    const exit = await d.exited;
    expect(exit.code).toBe(0);
    const log = events(d);
    const order = log.map((e) => e.event).filter((e) => e !== 'daemon.start' && e !== 'job.overlap');
    expect(order).toEqual(['job.start', 'daemon.stopping', 'job.end', 'daemon.stop']);
    expect(log.find((e) => e.event === 'job.end')).toMatchObject({ status: 'succeeded', counts: { rated: 12_000 } });
    expect(Number((await db.knex('rated_charges').count('* as n').first())!.n)).toBe(12_000);
    expect((await listJobRuns(db)).map((r) => r.status)).toEqual(['succeeded']);
    expect(await db.knex('job_locks').select()).toEqual([]);
  });

  it('a daemon killed mid-job leaves a lease the next daemon takes over once it expires', async () => {
    const { db, url, dialect } = t();
    await seedBulkSummaries(db, 12_000);
    const file = config({ lockTtlSeconds: 4 });
    const a = daemon(url, file);
    await until(async () => Boolean(await db.knex('job_runs').where({ status: 'running' }).first()));
    a.child.kill('SIGKILL');
    await a.exited;
    const lease = await db.knex('job_locks').first();
    if (dialect === 'sqlite') expect(lease).toBeTruthy(); // PostgreSQL released the advisory lock with the session

    const b = daemon(url, file);
    await b.waitFor(isEvent('job.end'), 30_000);
    b.child.kill('SIGTERM');
    expect((await b.exited).code).toBe(0);
    const log = events(b);
    const end = log.find((e) => e.event === 'job.end');
    expect(end).toMatchObject({ status: 'succeeded' });
    if (dialect === 'sqlite') {
      // Until the dead owner's lease expired, b's ticks found the lock busy.
      const skipped = log.filter((e) => e.event === 'job.skipped');
      expect(skipped.length).toBeGreaterThan(0);
      expect(skipped[0].reason).toMatch(/already running in another process/);
      // ...and its first run started only once the lease had expired.
      const firstRun = log.find((e) => e.event === 'job.start' && !skipped.some((s) => s.ts >= e.ts));
      expect(Date.parse(firstRun!.ts)).toBeGreaterThanOrEqual(Number(lease.expires_at) - 1000);
      expect(Date.parse(end!.ts)).toBeGreaterThanOrEqual(Number(lease.expires_at));
    }
    // The dead daemon's run, closed as abandoned, then b's run(s) (SIGTERM lets a started one finish).
    const runs = (await listJobRuns(db)).reverse();
    expect(runs[0]).toMatchObject({ status: 'failed', error: expect.stringMatching(/abandoned/) });
    expect(runs.length).toBeGreaterThanOrEqual(2);
    expect(runs.slice(1).every((r) => r.status === 'succeeded')).toBe(true);
    expect(Number((await db.knex('rated_charges').count('* as n').first())!.n)).toBe(12_000);
  });

  it('does not start a job again while its previous tick is still running', async () => {
    const { db } = t();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let runs = 0;
    const slow: Stage = {
      job: 'invoice',
      async run() {
        runs++;
        await gate;
        return { created: 0 };
      },
    };
    const log: DaemonLogEntry[] = [];
    const d = startDaemon(db, {
      config: { ...DEFAULT_DAEMON_CONFIG, schedules: { invoice: '* * * * * *' } },
      actor: 'test',
      clock: Date.now,
      log: (e) => log.push(e),
      stages: [slow],
    });
    await until(async () => log.filter((e) => e.event === 'job.overlap').length >= 2, 10_000);
    expect(runs).toBe(1);
    expect(d.state().jobs).toMatchObject([{ job: 'invoice', state: 'running' }]);
    const stopping = d.stop('test');
    release();
    expect(await stopping).toEqual({ clean: true });
    expect(runs).toBe(1);
    expect((await listJobRuns(db)).map((r) => [r.job, r.status])).toEqual([['invoice', 'succeeded']]);
    expect(log.find((e) => e.event === 'job.overlap')).toMatchObject({ level: 'warn', job: 'invoice', reason: 'still running from an earlier tick' });
  });

  it('refuses a bad schedule with one line naming it, and --now', async () => {
    const { url } = t();
    const bad = await runCli(['daemon', '--schedule', 'invoice=99 * * * *'], { db: url });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('billing: --schedule: schedule for "invoice" is not a valid cron expression: "99 * * * *" (99 is a invalid expression for minute)');
    const unknown = await runCli(['daemon', '--schedule', 'billing=* * * * *'], { db: url });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown job "billing"/);
    const now = await runCli(['daemon'], { db: url, now: '2026-01-01T00:00:00Z' });
    expect(now.code).toBe(2);
    expect(now.stderr).toMatch(/real clock/);
  });
});
