import { recordUsage, recordUsageBatches, type RecordResult, type UsageInput } from '../ingest/record.js';
import type { Db } from '../storage/db.js';

interface Pending {
  inputs: UsageInput[];
  now: number;
  resolve(results: RecordResult[]): void;
  reject(e: unknown): void;
}

/**
 * Group commit for recorded usage: requests that arrive while a transaction is being written
 * go into the next one together, so one commit (and, on SQLite, one turn of the write lock)
 * and one INSERT serve many requests. Each request is still validated at its own clock and
 * gets its own results (recordUsageBatches). An idle server writes a lone request at once: no added latency.
 * A transaction that fails is retried request by request, so one cannot fail another.
 */
export class UsageGroupCommit {
  private queue: Pending[] = [];
  private writing = false;
  /** Transactions written, and groups retried request by request after one failed. */
  readonly stats = { requests: 0, transactions: 0, retriedGroups: 0 };

  constructor(
    private readonly db: Db,
    /** Events per transaction, at most (a request's batch is never split). */
    private readonly maxEvents = 2000,
    /** Passed to recordUsage: how far events may predate their tenant. */
    private readonly backfillDays?: number,
  ) {}

  record(inputs: UsageInput[], now: number): Promise<RecordResult[]> {
    this.stats.requests++;
    return new Promise((resolve, reject) => {
      this.queue.push({ inputs, now, resolve, reject });
      if (!this.writing) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.writing = true;
    try {
      while (this.queue.length > 0) {
        // better-sqlite3 runs a whole transaction without returning to the event loop, so
        // no request could join it: let the requests already received be read first.
        await new Promise((resolve) => setImmediate(resolve));
        await this.write(this.take());
      }
    } finally {
      this.writing = false;
    }
  }

  private take(): Pending[] {
    const group: Pending[] = [];
    let events = 0;
    while (this.queue.length > 0 && (group.length === 0 || events + this.queue[0].inputs.length <= this.maxEvents)) {
      const p = this.queue.shift()!;
      group.push(p);
      events += p.inputs.length;
    }
    return group;
  }

  private async write(group: Pending[]): Promise<void> {
    let results: RecordResult[][];
    this.stats.transactions++;
    try {
      results = await recordUsageBatches(this.db, group, { backfillDays: this.backfillDays });
    } catch (e) {
      // Alone, the error is the request's own; together, each finds out for itself.
      if (group.length === 1) {
        group[0].reject(e);
        return;
      }
      this.stats.retriedGroups++;
      for (const p of group) await recordUsage(this.db, p.inputs, { now: p.now, backfillDays: this.backfillDays }).then(p.resolve, p.reject);
      return;
    }
    group.forEach((p, i) => p.resolve(results[i]));
  }
}
