import type { PipelineEvent, StageReport } from '../jobs/pipeline.js';
import { isInteractive, liveView, type LiveView } from './live.js';
import { planSummary } from './plan.js';
import type { FinishedStage, RunProgressProps } from './run-progress.js';

/** One line describing a finished stage: its counts, why it was skipped, or its error. */
export function stageDetail(r: StageReport): string {
  if (r.status === 'failed') return `${r.error?.code}: ${r.error?.message}`;
  if (r.reason) return r.reason;
  if (r.status === 'planned') return planSummary(r);
  if (r.counts) return Object.entries(r.counts).map(([k, v]) => `${k}=${v}`).join(' ');
  return '';
}

export type RunReporter = ((e: PipelineEvent) => void) & { readonly enabled: boolean; finish(): Promise<void> };

/** `billing run` progress on a terminal (stages as they finish, a bar over the stages). */
export function createRunReporter(stream: NodeJS.WriteStream, opts: { json?: boolean; env?: NodeJS.ProcessEnv } = {}): RunReporter {
  const enabled = isInteractive(stream, opts);
  const started = performance.now();
  let view: LiveView<RunProgressProps> | null = null;
  const props: RunProgressProps = { finished: [], current: null, total: 0, elapsedMs: 0 };
  const report = (e: PipelineEvent) => {
    if (!enabled) return;
    props.total = e.total;
    props.elapsedMs = performance.now() - started;
    if (e.type === 'stage-start') props.current = e.job;
    else {
      const f: FinishedStage = { job: e.job, status: e.report.status, durationMs: e.report.durationMs, detail: stageDetail(e.report) };
      props.finished = [...props.finished, f];
      props.current = null;
    }
    view ??= liveView(async () => (await import('./run-progress.js')).RunProgress, stream, { ...props });
    view.update({ ...props });
  };
  return Object.assign(report, {
    enabled,
    async finish() {
      if (view) await view.finish({ ...props, current: null, elapsedMs: performance.now() - started });
      view = null;
    },
  });
}
