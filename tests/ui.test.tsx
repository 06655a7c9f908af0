import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { render } from 'ink-testing-library';
import { ProgressBar } from '../src/ui/progress-bar.js';
import { RunProgress } from '../src/ui/run-progress.js';
import { DaemonPanel } from '../src/ui/daemon-panel.js';
import { bar, eta, formatCount, formatDuration, relative } from '../src/ui/format.js';
import { createProgressReporter } from '../src/ui/progress.js';
import { createRunReporter } from '../src/ui/run-reporter.js';
import { humanLine } from '../src/ui/daemon-view.js';
import type { DaemonState } from '../src/jobs/daemon.js';

const plain = (s: string | undefined) => (s ?? '').replace(/\x1b\[[0-9;]*m/g, '');

describe('text pieces', () => {
  it('formats counts, durations, rates and bars', () => {
    expect(formatCount(1234567)).toBe('1,234,567');
    expect(formatDuration(850)).toBe('850ms');
    expect(formatDuration(12_340)).toBe('12.3s');
    expect(formatDuration(185_000)).toBe('3m 05s');
    expect(formatDuration(7_440_000)).toBe('2h 04m');
    expect(eta(250, 1000, 5000)).toBe(15_000); // 50/s, 750 left
    expect(eta(0, 1000, 5000)).toBeNull();
    expect(eta(10, null, 5000)).toBeNull();
    expect(bar(0.5, 10)).toBe('█████░░░░░');
    expect(bar(2, 4)).toBe('████');
    expect(relative(10_000, 4_000)).toBe('in 6.0s');
    expect(relative(1_000, 4_000)).toBe('3.0s ago');
    expect(relative(null, 0)).toBe('-');
  });
});

describe('ink components', () => {
  it('ProgressBar shows the bar, percentage, counts, rate and ETA', () => {
    const { lastFrame } = render(<ProgressBar label="ingest" done={2500} total={10000} elapsedMs={1000} width={10} />);
    expect(plain(lastFrame())).toBe('ingest ███░░░░░░░ 25% 2,500/10,000 rows 2,500 rows/s ETA 3.0s');
  });

  it('ProgressBar without a total shows the count, rate and elapsed time', () => {
    const { lastFrame } = render(<ProgressBar label="ingest" done={300} unit="events" elapsedMs={2000} />);
    expect(plain(lastFrame())).toBe('ingest 300 events 150 events/s 2.0s');
  });

  it('ProgressBar follows bytes but reports rows per second when given rows', () => {
    const { lastFrame } = render(<ProgressBar label="usage.csv" done={512} total={2048} unit="bytes" rows={4000} elapsedMs={2000} width={8} />);
    expect(plain(lastFrame())).toBe('usage.csv ██░░░░░░ 25% 4,000 rows 2,000 rows/s ETA 6.0s');
  });

  it('ProgressBar before the first batch says it is reading, with or without a total', () => {
    const sized = render(<ProgressBar label="usage.csv" done={0} total={2048} unit="bytes" rows={0} elapsedMs={3} width={4} />);
    expect(plain(sized.lastFrame())).toBe('usage.csv ░░░░ 0% reading… 3ms');
    const piped = render(<ProgressBar label="stdin" done={0} unit="bytes" rows={0} elapsedMs={3} />);
    expect(plain(piped.lastFrame())).toBe('stdin reading… 3ms');
  });

  it('RunProgress keeps finished stages above the bar', () => {
    const finished = [
      { job: 'aggregate', status: 'succeeded', durationMs: 1200, detail: 'groups=4 events=120' },
      { job: 'overage', status: 'failed', durationMs: 30, detail: 'db_error: disk full' },
    ];
    const { lastFrame, rerender } = render(<RunProgress finished={finished.slice(0, 1)} current="overage" total={5} elapsedMs={1500} />);
    const first = plain(lastFrame());
    expect(first).toContain('✓ aggregate');
    expect(first).toContain('groups=4 events=120');
    expect(first).toMatch(/overage .*20% 1\/5 stages/);
    rerender(<RunProgress finished={finished} current={null} total={5} elapsedMs={1600} />);
    const second = plain(lastFrame());
    expect(second).toMatch(/✗ overage\s+30ms db_error: disk full/);
    expect(second).not.toContain('stages');
  });

  it('DaemonPanel lists each job with its state, last and next run', () => {
    const now = Date.parse('2026-02-10T12:00:00Z');
    const state: DaemonState = {
      owner: 'host:1:abc',
      timezone: 'UTC',
      stopping: false,
      jobs: [
        { job: 'aggregate', schedule: '0 * * * *', state: 'running', nextRunAt: now + 3_600_000, last: null },
        {
          job: 'invoice', schedule: '15 0 * * *', state: 'idle', nextRunAt: now + 12 * 3_600_000,
          last: { status: 'succeeded', durationMs: 420, finishedAt: now - 60_000, counts: { created: 2 } },
        },
      ],
    };
    const { lastFrame } = render(<DaemonPanel state={state} now={now} log={[{ id: 1, text: '12:00:00 job.start job=aggregate', level: 'info' }]} />);
    const out = plain(lastFrame());
    expect(out).toContain('12:00:00 job.start job=aggregate');
    expect(out).toContain('billing daemon · UTC · host:1:abc');
    expect(out).toMatch(/aggregate\s+0 \* \* \* \*\s+running\s+-\s+in 1h 00m/);
    expect(out).toMatch(/invoice\s+15 0 \* \* \*\s+idle\s+succeeded 1m 00s ago \(420ms\)\s+in 12h 00m/);
  });

  it('a daemon log entry reads as one line', () => {
    expect(humanLine({ time: '2026-02-10T12:00:01.000Z', level: 'info', msg: 'job.end', job: 'invoice', counts: { created: 2 } }))
      .toBe('12:00:01 job.end job=invoice counts={"created":2}');
  });
});

/** A writable that looks like a terminal (or not) and records what it was sent. */
function stream(isTTY: boolean) {
  const s = new PassThrough() as PassThrough & { isTTY: boolean; columns: number; rows: number };
  s.isTTY = isTTY;
  s.columns = 100;
  s.rows = 30;
  let out = '';
  s.on('data', (d) => (out += d.toString()));
  return { s: s as unknown as NodeJS.WriteStream, out: () => out };
}

describe('progress reporters', () => {
  it('write nothing when the stream is not a terminal, with --json, or with NO_COLOR', async () => {
    for (const [isTTY, opts] of [[false, {}], [true, { json: true }], [true, { env: { NO_COLOR: '1' } }]] as const) {
      const { s, out } = stream(isTTY);
      const p = createProgressReporter(s, { ...opts, env: 'env' in opts ? opts.env : {} });
      expect(p.enabled).toBe(false);
      p({ done: 10, total: 100 });
      await p.finish();
      const r = createRunReporter(s, { ...opts, env: 'env' in opts ? opts.env : {} });
      r({ type: 'stage-start', job: 'aggregate', index: 0, total: 1 });
      await r.finish();
      expect(out()).toBe('');
    }
  });

  it('draw with ink on a terminal and leave the final state', async () => {
    const { s, out } = stream(true);
    const p = createProgressReporter(s, { env: {}, label: 'ingest' });
    expect(p.enabled).toBe(true);
    p({ done: 50, total: 100 });
    p({ done: 100, total: 100 });
    await p.finish();
    expect(plain(out())).toMatch(/ingest .*100% 100\/100 rows/);
  });
});
