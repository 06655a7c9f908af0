import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { tempDir } from './helpers/temp.js';
import { runCli } from './helpers/cli.js';
import { events, ManualScheduler, seedBulkSummaries, seedWorld, spawnBilling, until } from './jobs-support.js';
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
  return e.msg === event && more(e);
};

describeEachDb('daemon', (t) => {
  it('two daemons on one database run each job once per tick, in pipeline order', async () => {
    const { db } = t();
    await seedWorld(db);
    {
      const scheduler = new ManualScheduler();
      let now = Date.parse('2026-02-10T12:00:00Z');
      const clock = () => ++now; // strictly increasing, so start times order the runs
      const logs: DaemonLogEntry[][] = [[], []];
      const schedules = Object.fromEntries(JOB_NAMES.map((j) => [j, j === 'aggregate' || j === 'overage' ? '* * * * * *' : null]));
      // Two daemons (two lock owners) on one handle: two SQLite handles in one process would
      // block each other's synchronous busy wait.
      const [a, b] = [0, 1].map((i) =>
        startDaemon(db, {
          config: { ...DEFAULT_DAEMON_CONFIG, schedules },
          actor: 'test',
          clock,
          scheduler,
          log: (e) => logs[i].push(e),
        }),
      );
      for (let tick = 0; tick < 3; tick++) {
        const at = now - (now % 1000) + 1000;
        now = at + 1000; // past the settle delay, so the tick's jobs run at once
        scheduler.tick(at);
        await Promise.all([a.idle(), b.idle()]);
      }
      expect(await a.stop('test')).toEqual({ clean: true });
      expect(await b.stop('test')).toEqual({ clean: true });

      const runs = await listJobRuns(db, { limit: 1000 });
      const ticks = new Map<string, number>();
      for (const r of runs) ticks.set(`${r.job}@${r.scheduledAt}`, (ticks.get(`${r.job}@${r.scheduledAt}`) ?? 0) + 1);
      expect(runs.filter((r) => r.job === 'overage').length).toBe(3);
      expect(runs.filter((r) => r.job === 'aggregate').length).toBe(3);
      for (const [tick, n] of ticks) expect({ tick, n }).toEqual({ tick, n: 1 });
      expect(runs.every((r) => r.status === 'succeeded' && r.trigger === 'daemon')).toBe(true);
      // Within a tick, whichever daemon ran them, aggregate went before overage.
      for (const o of runs.filter((r) => r.job === 'overage')) {
        const agg = runs.find((r) => r.job === 'aggregate' && r.scheduledAt === o.scheduledAt);
        expect(agg!.startedAt).toBeLessThan(o.startedAt);
      }
      // Each tick ran once in all: the other daemon found it done (or taken) and skipped it.
      const logged = [...logs[0], ...logs[1]];
      expect(logged.filter((e) => e.msg === 'job.end').length).toBe(runs.length);
      expect(logged.filter((e) => e.msg === 'job.skipped').length).toBe(6);
      for (const e of logged.filter((x) => x.msg === 'job.end')) {
        expect(e).toMatchObject({ level: 'info', status: 'succeeded', counts: expect.any(Object) });
        expect(typeof e.duration_ms).toBe('number');
      }
      expect(logged.filter((e) => e.msg === 'daemon.stop').map((e) => e.clean)).toEqual([true, true]);
    }
  });

  it('runs on node-cron in a real process, and stops on SIGTERM', async () => {
    const { db, url } = t();
    await seedWorld(db);
    const d = daemon(url, config());
    await d.waitFor(isEvent('job.end')); // the first every-second tick
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    const runs = await listJobRuns(db);
    expect(runs.length).toBeGreaterThanOrEqual(1);
    expect(runs.every((r) => r.job === 'overage' && r.status === 'succeeded' && r.trigger === 'daemon')).toBe(true);
    expect(events(d).at(-1)).toMatchObject({ msg: 'daemon.stop', clean: true });
    // One log shape with billing serve: {time, level, msg, ...}, time as ISO.
    for (const e of events(d)) {
      expect(Object.keys(e).slice(0, 3)).toEqual(['time', 'level', 'msg']);
      expect(new Date(e.time).toISOString()).toBe(e.time);
    }
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
    const order = log.map((e) => e.msg).filter((e) => e !== 'daemon.start' && e !== 'job.overlap');
    expect(order).toEqual(['job.start', 'daemon.stopping', 'job.end', 'daemon.stop']);
    expect(log.find((e) => e.msg === 'job.end')).toMatchObject({ status: 'succeeded', counts: { rated: 12_000 } });
    expect(Number((await db.knex('rated_charges').count('* as n').first())!.n)).toBe(12_000);
    expect((await listJobRuns(db)).map((r) => r.status)).toEqual(['succeeded']);
    expect(await db.knex('job_locks').select()).toEqual([]);
  });

  it('a daemon killed mid-job leaves a lease the next daemon takes over once it expires', async () => {
    const { db, url, dialect } = t();
    await seedBulkSummaries(db, 12_000);
    const file = config();
    const a = daemon(url, file);
    await until(async () => Boolean(await db.knex('job_runs').where({ status: 'running' }).first()));
    a.child.kill('SIGKILL');
    await a.exited;
    const b = daemon(url, file);
    if (dialect === 'sqlite') {
      // The dead owner's lease outlives it: b's ticks find the lock busy...
      expect(await db.knex('job_locks').first()).toMatchObject({ owner: expect.any(String) });
      const skipped = JSON.parse(await b.waitFor(isEvent('job.skipped')));
      expect(skipped.reason).toMatch(/already running in another process/);
      expect(events(b).some((e) => e.msg === 'job.end')).toBe(false);
      // ...until it expires (written here rather than waited for).
      await db.knex('job_locks').update({ expires_at: 0 });
    } // PostgreSQL releases the advisory lock with the dead session.
    const end = JSON.parse(await b.waitFor(isEvent('job.end'), 30_000));
    expect(end).toMatchObject({ status: 'succeeded' });
    b.child.kill('SIGTERM');
    expect((await b.exited).code).toBe(0);
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
    const scheduler = new ManualScheduler();
    let now = Date.parse('2026-02-10T12:00:00Z');
    const d = startDaemon(db, {
      config: { ...DEFAULT_DAEMON_CONFIG, schedules: { invoice: '* * * * * *' } },
      actor: 'test',
      clock: () => now,
      scheduler,
      log: (e) => log.push(e),
      stages: [slow],
    });
    for (let tick = 1; tick <= 3; tick++) {
      now += 2000;
      scheduler.tick(now - 1000);
      if (tick === 1) await until(async () => runs === 1);
    }
    expect(log.filter((e) => e.msg === 'job.overlap').length).toBe(2);
    expect(runs).toBe(1);
    expect(d.state().jobs).toMatchObject([{ job: 'invoice', state: 'running' }]);
    const stopping = d.stop('test');
    release();
    expect(await stopping).toEqual({ clean: true });
    expect(runs).toBe(1);
    expect((await listJobRuns(db)).map((r) => [r.job, r.status])).toEqual([['invoice', 'succeeded']]);
    expect(log.find((e) => e.msg === 'job.overlap')).toMatchObject({ level: 'warn', job: 'invoice', reason: 'still running from an earlier tick' });
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
