import { isInteractive, liveView, type LiveView } from './live.js';
import type { ProgressBarProps } from './progress-bar.js';

/** What a long-running core call reports through its onProgress callback. */
export interface ProgressUpdate {
  /** Units done so far (rows read, bytes, ...). */
  done: number;
  /** Total units when known (file size, row count), else null. */
  total?: number | null;
  label?: string;
  unit?: string;
  /** Rows handled, when `done`/`total` count something else (bytes): shown as rows and rows/s. */
  rows?: number;
}

export type ProgressReporter = ((p: ProgressUpdate) => void) & {
  /** Whether anything is drawn (a TTY, no --json, no NO_COLOR). */
  readonly enabled: boolean;
  /**
   * Draw the bar now, at 0 ("reading…"), instead of at the first report: a slow first batch
   * would otherwise leave the terminal blank. Resolves once that first frame is drawn.
   */
  start(p?: Partial<ProgressUpdate>): Promise<void>;
  /** Draw the last state and release the terminal; call before printing the summary. */
  finish(): Promise<void>;
};

/**
 * A progress bar with rate and ETA on `stream` (usually process.stderr) when it is a
 * terminal; otherwise a no-op, so pipes and logs get no escape codes. Pass the result as a
 * core function's onProgress, e.g. for ingest:
 *   const progress = createProgressReporter(process.stderr, { json: ctx.json, env: ctx.env, label: 'ingest' });
 *   onProgress: (p) => progress({ done: p.bytes, total: p.totalBytes ?? null, rows: p.read, label: p.source, unit: 'bytes' })
 *   ... then `await progress.finish()` before printing the summary.
 */
export function createProgressReporter(
  stream: NodeJS.WriteStream,
  opts: { json?: boolean; env?: NodeJS.ProcessEnv; label?: string; unit?: string } = {},
): ProgressReporter {
  const enabled = isInteractive(stream, opts);
  const started = performance.now();
  let view: LiveView<ProgressBarProps> | null = null;
  let last: ProgressBarProps = { label: opts.label ?? 'progress', done: 0, total: null, unit: opts.unit ?? 'rows', elapsedMs: 0 };
  const report = (p: ProgressUpdate) => {
    if (!enabled) return;
    last = {
      label: p.label ?? last.label,
      done: p.done,
      total: p.total ?? last.total,
      unit: p.unit ?? last.unit,
      rows: p.rows,
      elapsedMs: performance.now() - started,
    };
    view ??= liveView(async () => (await import('./progress-bar.js')).ProgressBar, stream, last);
    view.update(last);
  };
  return Object.assign(report, {
    enabled,
    async start(p: Partial<ProgressUpdate> = {}) {
      if (!enabled || view) return;
      last = { ...last, label: p.label ?? last.label, total: p.total ?? last.total, unit: p.unit ?? last.unit, rows: p.rows, done: p.done ?? 0 };
      view = liveView(async () => (await import('./progress-bar.js')).ProgressBar, stream, last);
      await view.drawn;
    },
    async finish() {
      if (view) await view.finish({ ...last, elapsedMs: performance.now() - started });
      view = null;
    },
  });
}
