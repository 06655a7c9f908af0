import { performance } from 'node:perf_hooks';

/**
 * Runs calls with at most `concurrency` in flight and starts spaced at least 1/perSecond
 * apart, so a sync stays well under Stripe's rate limits whatever the network latency.
 * (Pacing uses a monotonic timer; no business time is read here.)
 */
export function createLimiter(opts: { concurrency: number; perSecond: number }): <T>(fn: () => Promise<T>) => Promise<T> {
  const concurrency = Math.max(1, Math.floor(opts.concurrency));
  const spacing = opts.perSecond > 0 ? 1000 / opts.perSecond : 0;
  let active = 0;
  let nextStart = 0;
  const waiting: Array<() => void> = [];

  const acquire = async () => {
    // A released slot is handed straight to the next waiter, so `active` never overshoots.
    if (active >= concurrency) await new Promise<void>((resolve) => waiting.push(resolve));
    else active++;
    const t = performance.now();
    const startAt = Math.max(t, nextStart);
    nextStart = startAt + spacing;
    if (startAt > t) await new Promise((r) => setTimeout(r, startAt - t));
  };
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else active--;
  };
  return async <T>(fn: () => Promise<T>) => {
    await acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  };
}

/** Run fn on every item and wait for all of them, then rethrow the first failure (none left running). */
export async function settleAll<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  const results = await Promise.allSettled(items.map(fn));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
