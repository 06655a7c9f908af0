import { performance } from 'node:perf_hooks';
import pLimit from 'p-limit';

/**
 * Runs calls with at most `concurrency` in flight and starts spaced at least 1/perSecond
 * apart, so a sync stays well under Stripe's rate limits whatever the network latency.
 * (Pacing uses a monotonic timer; no business time is read here.)
 */
export function createLimiter(opts: { concurrency: number; perSecond: number }): <T>(fn: () => Promise<T>) => Promise<T> {
  const limit = pLimit(Math.max(1, Math.floor(opts.concurrency)));
  const spacing = opts.perSecond > 0 ? 1000 / opts.perSecond : 0;
  let nextStart = 0;
  // Runs inside a slot: a call takes its start time only once it may run.
  const pace = async () => {
    const t = performance.now();
    const startAt = Math.max(t, nextStart);
    nextStart = startAt + spacing;
    if (startAt > t) await new Promise((r) => setTimeout(r, startAt - t));
  };
  return <T>(fn: () => Promise<T>) =>
    limit(async () => {
      await pace();
      return fn();
    });
}

/** Run fn on every item and wait for all of them, then rethrow the first failure (none left running). */
export async function settleAll<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  const results = await Promise.allSettled(items.map(fn));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
