import pLimit, { type LimitFunction } from 'p-limit';

/**
 * A FIFO concurrency limit. Running a few requests at a time to completion, instead of
 * interleaving hundreds of them query by query on a small connection pool, keeps the
 * latency of each one close to the average instead of a long tail.
 */
export class Gate {
  private readonly limit: LimitFunction;

  constructor(max: number) {
    this.limit = pLimit(max);
  }

  /** Requests waiting for a slot (the queue-depth gauge). */
  get queued(): number {
    return this.limit.pendingCount;
  }

  run<T>(fn: () => Promise<T>): Promise<T> {
    return this.limit(fn);
  }
}
