import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeEachDb, freshDb, type TestDb } from './helpers/db.js';
import { tempDir } from './helpers/temp.js';
import { runCli } from './helpers/cli.js';
import { JAN, NOW, seedWorld, snapshot, spawnScript, until } from './jobs-support.js';
import { FakeStripe } from './support/fake-stripe.js';
import { withJobLock } from '../src/jobs/lock.js';
import { runPipeline } from '../src/jobs/pipeline.js';
import { listJobRuns } from '../src/jobs/runs.js';
import { PIPELINE_JOBS, stagesFor, type Stage } from '../src/jobs/stages.js';
import type { Db } from '../src/storage/db.js';
import { BillingError } from '../src/domain/errors.js';

const ISO_NOW = new Date(NOW).toISOString();

/** A child process that takes a job lock and holds it until told to stop (or killed). */
function holdLock(url: string, job: string, ttlMs: number) {
  return spawnScript(
    `import { openDb } from './dist/src/storage/db.js';
     import { withJobLock } from './dist/src/jobs/lock.js';
     const [url, job, ttl] = process.argv.slice(1);
     const db = await openDb(url);
     const r = await withJobLock(db, job, { owner: 'holder', now: Date.now(), ttlMs: Number(ttl), clock: Date.now }, async () => {
       console.log('locked');
       await new Promise((res) => process.stdin.once('data', res));
     });
     console.log(r.acquired ? 'released' : 'busy');
     await db.close();`,
    [url, job, String(ttlMs)],
  );
}

describeEachDb('job locks', (t) => {
  it('excludes a second holder in the same process, and frees the lock afterwards', async () => {
    const { db } = t();
    const opts = { now: NOW, ttlMs: 5000 };
    const outer = await withJobLock(db, 'overage', { ...opts, owner: 'a' }, async () => {
      const inner = await withJobLock(db, 'overage', { ...opts, owner: 'b' }, async () => 'ran');
      const other = await withJobLock(db, 'aggregate', { ...opts, owner: 'b' }, async () => 'other job ran');
      return { inner, other };
    });
    expect(outer.acquired).toBe(true);
    if (!outer.acquired) throw new Error('the first holder did not get the lock');
    expect(outer.value.inner.acquired).toBe(false);
    expect(outer.value.other).toEqual({ acquired: true, value: 'other job ran' });
    expect(await withJobLock(db, 'overage', { ...opts, owner: 'b' }, async () => 'later')).toEqual({ acquired: true, value: 'later' });
    expect(await db.knex('job_locks').count('* as n').first()).toMatchObject({ n: 0 });
  });

  it('releases the lock when the job throws', async () => {
    const { db } = t();
    await expect(withJobLock(db, 'invoice', { owner: 'a', now: NOW, ttlMs: 5000 }, async () => {
      throw new BillingError('internal', 'boom');
    })).rejects.toThrow('boom');
    expect((await withJobLock(db, 'invoice', { owner: 'b', now: NOW, ttlMs: 5000 }, async () => 1)).acquired).toBe(true);
  });

  it('excludes another process while it holds the lock', async () => {
    const { db, url } = t();
    const holder = holdLock(url, 'overage', 10_000);
    await holder.waitFor((l) => l === 'locked');
    const busy = await withJobLock(db, 'overage', { owner: 'me', now: Date.now(), ttlMs: 5000, clock: Date.now }, async () => 'ran');
    expect(busy.acquired).toBe(false);
    if (!busy.acquired) expect(busy.holder).toBeTruthy();

    // `billing run` meets the same lock: the stage is skipped, recorded, and the run fails.
    const r = await runCli(['run'], { db: url, now: ISO_NOW });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/stage overage is already running in another process/);
    const [skipped] = await listJobRuns(db, { job: 'overage' });
    expect(skipped).toMatchObject({ status: 'skipped', trigger: 'run' });

    holder.child.stdin!.end('go\n');
    await holder.waitFor((l) => l === 'released');
    await holder.exited;
    expect((await withJobLock(db, 'overage', { owner: 'me', now: Date.now(), ttlMs: 5000, clock: Date.now }, async () => 'ran')).acquired).toBe(true);
  });

  it('lets the next process take over the lock of a process killed while holding it', async () => {
    const { db, url, dialect } = t();
    const holder = holdLock(url, 'overage', 60_000);
    await holder.waitFor((l) => l === 'locked');
    holder.child.kill('SIGKILL');
    await holder.exited;
    const take = (at: number) => withJobLock(db, 'overage', { owner: 'me', now: at, ttlMs: 5000, clock: () => at }, async () => 'ran');
    if (dialect === 'sqlite') {
      // The lease outlives its owner until it expires (a clock just before, then just after it).
      const lease = await db.knex('job_locks').first();
      expect(lease).toMatchObject({ owner: 'holder' });
      expect((await take(Number(lease.expires_at) - 1)).acquired).toBe(false);
      expect(await take(Number(lease.expires_at))).toEqual({ acquired: true, value: 'ran' });
    } else {
      // PostgreSQL drops an advisory lock with its session, once the server notices the dead
      // connection (asynchronous: poll rather than assume it is instant).
      await until(async () => (await take(Date.now())).acquired);
    }
  });
});

describe('job lease [sqlite]', () => {
  let current: TestDb | undefined;
  beforeEach(async () => {
    current = await freshDb('sqlite');
  });
  afterEach(async () => {
    await current?.cleanup();
  });

  /** Hold a lease with a hand-driven clock and renewal timer; at ttl x 2, maybe renew, then let b try. */
  async function takeOverAfterTwoLeases(renew: boolean) {
    const db = current!.db;
    let now = NOW;
    let tick: () => Promise<void> = async () => {};
    const clock = () => now;
    const every = (fn: () => Promise<void>) => ((tick = fn), () => {});
    return withJobLock(db, 'overage', { owner: 'a', now, ttlMs: 300, clock, every }, async () => {
      now += 700; // more than two lease lengths
      if (renew) await tick();
      return withJobLock(db, 'overage', { owner: 'b', now, ttlMs: 300, clock }, async () => 'stolen');
    });
  }

  it('renews the lease while a long job runs, so it is not taken over', async () => {
    expect(await takeOverAfterTwoLeases(true)).toMatchObject({ acquired: true, value: { acquired: false, holder: 'a' } });
    // Without the renewal the lease would have been taken over.
    expect(await takeOverAfterTwoLeases(false)).toMatchObject({ acquired: true, value: { acquired: true, value: 'stolen' } });
  });
});

describeEachDb('pipeline', (t) => {
  const invoices = async (db: Db) =>
    (await db.knex('invoices').select('tenant_id', 'status', 'total', 'period_start').orderBy('tenant_id')).map((r) => ({ ...r, period_start: Number(r.period_start) }));

  it('runs every stage in order, records each run, and is idempotent', async () => {
    const { db } = t();
    await seedWorld(db);
    const events: string[] = [];
    const first = await runPipeline(db, { now: NOW, actor: 'test', onProgress: (e) => events.push(`${e.type}:${e.job}`) });
    expect(first.ok).toBe(true);
    expect(first.stages.map((s) => [s.job, s.status])).toEqual([
      ['aggregate', 'succeeded'],
      ['overage', 'succeeded'],
      ['invoice', 'succeeded'],
      ['stripe-sync', 'skipped'],
      ['dunning', 'skipped'],
      ['webhooks', 'succeeded'],
    ]);
    expect(first.stages[3].reason).toMatch(/STRIPE_SECRET_KEY/);
    expect(events.slice(0, 3)).toEqual(['stage-start:aggregate', 'stage-end:aggregate', 'stage-start:overage']);
    expect(events).toHaveLength(PIPELINE_JOBS.length * 2);
    // January closed: 120 scans on starter (50 included, 0.05 each) = 3.50 on top of 29.00.
    expect(await invoices(db)).toEqual([
      { tenant_id: 'acme', status: 'open', total: '32.50', period_start: JAN.start },
      { tenant_id: 'globex', status: 'open', total: '32.55', period_start: JAN.start },
    ]);
    const charges = async () => db.knex('rated_charges').select('tenant_id', 'feature_key', 'period_start', 'amount').orderBy(['tenant_id', 'period_start']);
    const after1 = await charges();

    const second = await runPipeline(db, { now: NOW, actor: 'test' });
    expect(second.ok).toBe(true);
    expect(second.stages.find((s) => s.job === 'invoice')!.counts).toMatchObject({ created: 0 });
    expect(await charges()).toEqual(after1);
    expect(await invoices(db)).toHaveLength(2);
    const runs = await listJobRuns(db, { job: 'invoice' });
    expect(runs.map((r) => [r.status, r.trigger])).toEqual([['succeeded', 'run'], ['succeeded', 'run']]);
    expect(runs[1].counts).toMatchObject({ created: 2, skipped: 0 });
    expect((await listJobRuns(db, { job: 'stripe-sync' }))[0]).toMatchObject({ status: 'skipped', error: expect.stringMatching(/STRIPE_SECRET_KEY/) });
  });

  it('stops at a failed stage, records the error, and the next run resumes', async () => {
    const { db } = t();
    await seedWorld(db);
    let fail = true;
    const flaky: Stage = {
      job: 'overage',
      async run() {
        if (fail) throw new BillingError('db_error', 'disk full');
        return { rated: 0 };
      },
    };
    const stages = [stagesFor(['aggregate'])[0], flaky, stagesFor(['invoice'])[0]];
    const r1 = await runPipeline(db, { now: NOW, actor: 'test', stages });
    expect(r1.ok).toBe(false);
    expect(r1.stoppedAt).toMatchObject({ job: 'overage', status: 'failed', error: { code: 'db_error', message: 'disk full' } });
    expect(r1.stages.map((s) => s.status)).toEqual(['succeeded', 'failed', 'not_run']);
    expect(await invoices(db)).toEqual([]);
    const [failed] = await listJobRuns(db, { job: 'overage' });
    expect(failed).toMatchObject({ status: 'failed', error: 'db_error: disk full' });
    expect(failed.finishedAt).not.toBeNull();

    fail = false;
    const r2 = await runPipeline(db, { now: NOW, actor: 'test', stages });
    expect(r2.ok).toBe(true);
    expect(await invoices(db)).toHaveLength(2);
  });

  it('closes a run left "running" by a process that died, once it holds the lock', async () => {
    const { db } = t();
    await db.knex('job_runs').insert({ job: 'overage', owner: 'dead:1', trigger: 'daemon', started_at: 1, status: 'running' });
    await runPipeline(db, { now: NOW, actor: 'test', stages: ['overage'] });
    const runs = await listJobRuns(db, { job: 'overage' });
    expect(runs.map((r) => r.status)).toEqual(['succeeded', 'failed']);
    expect(runs[1].error).toMatch(/abandoned/);
  });
});

describeEachDb('billing run / status (CLI)', (t) => {
  let fake: FakeStripe;
  beforeEach(async () => {
    fake = await FakeStripe.start({ now: NOW });
  });
  afterEach(async () => {
    await fake.close();
  });
  const stripeEnv = () => ({ STRIPE_SECRET_KEY: 'sk_test_jobs', STRIPE_API_BASE: fake.url });

  it('runs end to end into Stripe, then shows each job in status', async () => {
    const { db, url } = t();
    await seedWorld(db);
    const r = await runCli(['run', '--json'], { db: url, now: ISO_NOW, env: stripeEnv() });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.ok).toBe(true);
    expect(out.stages.map((s: any) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded']);
    expect(out.stages.find((s: any) => s.job === 'stripe-sync').counts).toMatchObject({ 'sent.customer': 2, 'sent.invoice': 2, failed: 0, dead: 0 });
    expect(fake.customers()).toHaveLength(2);
    expect(fake.invoices().map((i) => i.amount_due).sort()).toEqual([3250, 3255]);

    // Rerunning changes nothing: no new invoice, no second Stripe object.
    const plain = await runCli(['run'], { db: url, now: ISO_NOW, env: stripeEnv() });
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/^STAGE\s+STATUS\s+TIME\s+DETAIL/m);
    expect(plain.stdout).toMatch(/^invoice\s+succeeded\s+\S+\s+created=0/m);
    expect(plain.stdout + plain.stderr).not.toMatch(/\x1b\[/);
    expect(fake.customers()).toHaveLength(2);
    expect(fake.invoices()).toHaveLength(2);
    expect(await db.knex('invoices').count('* as n').first()).toMatchObject({ n: 2 });

    const s = await runCli(['status', '--json'], { db: url, now: '2026-02-10T12:20:00Z' });
    expect(s.code).toBe(0);
    const status = JSON.parse(s.stdout);
    const invoice = status.jobs.find((j: any) => j.job === 'invoice');
    expect(invoice.last).toMatchObject({ status: 'succeeded', trigger: 'run', counts: { created: 0 } });
    expect(invoice.nextRunAt).toBe('2026-02-11T00:15:00.000Z'); // daily at 00:15
    expect(status.jobs.find((j: any) => j.job === 'aggregate').nextRunAt).toBe('2026-02-10T13:00:00.000Z'); // hourly
    expect(status.locks).toEqual([]);
    expect(status.backlog).toMatchObject({ aggregation: { eventsWaiting: 0 }, invoicing: { periodsWaiting: 0 }, stripeOutbox: { pending: 0, failed: 0, dead: 0 } });

    // A new event and a closed February show up as waiting work.
    await db.knex('usage_events').insert({ tenant_id: 'acme', idempotency_key: 'new', feature_key: 'OCR_SCAN', quantity: 1, occurred_at: NOW, ingested_at: NOW });
    const later = JSON.parse((await runCli(['status', '--json'], { db: url, now: '2026-03-02T00:00:00Z' })).stdout);
    expect(later.backlog).toMatchObject({ aggregation: { eventsWaiting: 1 }, invoicing: { periodsWaiting: 2, oldestPeriodEnd: '2026-03-01T00:00:00.000Z' } });

    const table = await runCli(['status'], { db: url, now: ISO_NOW });
    expect(table.stdout).toMatch(/^JOB\s+LAST\s+STARTED/m);
    expect(table.stdout).toMatch(/^invoice\s+succeeded/m);
    expect(table.stdout).toMatch(/^events waiting for aggregation: 1$/m);
  });

  it('--dry-run shows the invoices and Stripe calls it would make, and changes nothing at all', async () => {
    const { db, url } = t();
    await seedWorld(db);
    const before = await snapshot(db);
    const r = await runCli(['run', '--dry-run', '--json'], { db: url, now: ISO_NOW, env: stripeEnv() });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ dryRun: true, ok: true });
    const plan = (job: string) => out.stages.find((s: any) => s.job === job);
    expect(plan('aggregate')).toMatchObject({ status: 'planned', plan: { eventsWaiting: 10 } });
    expect(plan('invoice').plan.invoices.map((i: any) => [i.tenant, i.total, i.status])).toEqual([['acme', '32.50', 'open'], ['globex', '32.55', 'open']]);
    expect(plan('stripe-sync').plan.planned.map((c: any) => c.path)).toEqual(['/v1/customers', '/v1/customers']);
    expect(plan('dunning')).toMatchObject({ status: 'not_run' });
    expect(await snapshot(db)).toEqual(before);
    expect(fake.requests).toEqual([]);

    const text = await runCli(['run', '--dry-run'], { db: url, now: ISO_NOW });
    expect(text.stdout).toMatch(/^dry run: nothing was changed$/m);
    expect(text.stdout).toMatch(/^invoice: 2 invoice\(s\) would be generated/m);
    expect(text.stdout).toMatch(/ acme +2026-01-01 – 2026-01-31 +/);
    expect(await snapshot(db)).toEqual(before);
  });

  it('status --strict exits 3 when a job last failed; a config file moves the schedules', async () => {
    const { db, url } = t();
    await db.knex('job_runs').insert({ job: 'invoice', owner: 'x', trigger: 'daemon', started_at: NOW - 5000, finished_at: NOW - 4000, status: 'failed', error: 'db_error: gone' });
    const { writeFileSync } = await import('node:fs');
    const dir = tempDir('billing-cfg-');
    writeFileSync(`${dir}/billing.config.json`, JSON.stringify({ daemon: { schedules: { invoice: '0 3 * * *', dunning: null } } }));
    const r = await runCli(['status', '--strict', '--json'], { db: url, now: ISO_NOW, cwd: dir });
    expect(r.code).toBe(3);
    const jobs = JSON.parse(r.stdout).jobs;
    expect(jobs.find((j: any) => j.job === 'invoice')).toMatchObject({ schedule: '0 3 * * *', nextRunAt: '2026-02-11T03:00:00.000Z', last: { status: 'failed', error: 'db_error: gone' } });
    expect(jobs.find((j: any) => j.job === 'dunning')).toMatchObject({ schedule: null, nextRunAt: null });

    writeFileSync(`${dir}/bad.json`, JSON.stringify({ daemon: { schedules: { invoice: '61 * * * *' } } }));
    const bad = await runCli(['status', '--config', `${dir}/bad.json`], { db: url, now: ISO_NOW });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toMatch(/^billing: .*bad\.json: daemon\.schedules\.invoice: not a valid cron expression: "61 \* \* \* \*"/);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
  });
});
