import type { Feature } from '../domain/catalog.js';
import type { Db } from '../storage/db.js';
import type { Hole } from './watermark.js';
import type { Window } from './windows.js';

export type Counts = { groups: number; events: number };
export type TenantWindow = { tenantId: string; window: Window };

/**
 * What the aggregate stage does differently per database (aggregate-pg.ts, aggregate-sqlite.ts);
 * aggregate.ts holds the rest, the same on both. Every method runs on the run's transaction handle.
 */
export interface AggregateDialect {
  /**
   * Called first in a run's transaction: the oldest transaction still running (holes older
   * than it can no longer be filled), or null where no hole can appear (one writer at a time).
   */
  oldestRunning(db: Db): Promise<bigint | null>;
  /** Seqs in (seen, upTo] not visible yet, noted before any event is read (none without holes). */
  newHoles(db: Db, seen: number, upTo: number): Promise<Hole[]>;
  /** Empty the scratch tables. */
  clearScratch(db: Db): Promise<void>;
  /** Windows into aggregate_windows, cut at bucket boundaries (see usage-sql.ts). */
  writeWindows(db: Db, windows: TenantWindow[]): Promise<void>;
  /** Summaries of every window in aggregate_windows, from all its events (old ones deleted already). */
  rebuildWindows(db: Db, features: Feature[], upTo: number, now: number): Promise<Counts>;
  /** FROM clause reading the new events by seq range. */
  readonly newEvents: string;
  /**
   * Merge the events with seq in (seen, upTo] into the summaries of these windows in one go,
   * when no hole is open; null where the general path (aggregate_delta) is the way.
   */
  mergeFresh: ((db: Db, features: Feature[], windows: TenantWindow[], seen: number, upTo: number, now: number) => Promise<number>) | null;
  /** After filling the scratch tables, before reading them. */
  analyzeScratch(db: Db): Promise<void>;
}
