import type { Db } from '../storage/db.js';
import { forUpdate } from '../storage/sql.js';

/**
 * Which events the aggregate stage has folded into usage_summaries, by usage_events.seq.
 * After a run with watermark W, every summary covers exactly the events with seq <= W that
 * were visible to it, so the next run can merge the events in (W, W'] without re-reading.
 *
 * - SQLite has one writer at a time, so seqs become visible in order: nothing below the
 *   watermark can appear later.
 * - PostgreSQL draws seqs when a row is inserted but shows the row only at commit, so a
 *   transaction still in flight can commit seq 100 after seq 101 was aggregated. Every seq at
 *   or below the new watermark that is not visible is kept as a "hole"; an event that later
 *   appears in a hole is not merged but makes its group recomputed from all its events (so
 *   holes may be coarse and re-read at will). A hole is dropped once every transaction that
 *   was in flight when it was seen has ended (the snapshot's xmin has passed the xmax recorded
 *   with it): it was a rolled-back insert or a duplicate that drew a seq and was skipped.
 */
export interface Hole {
  from: number;
  to: number;
  /** pg_snapshot_xmax when the hole was seen: no transaction at or above it can fill it. */
  xid: string;
}

export interface AggregateState {
  /** null: never aggregated (the first run is a full one). */
  watermark: number | null;
  holes: Hole[];
}

/** job_state keys of the state (plain words: readers embed them in SQL). */
export const WATERMARK = 'aggregate.watermark';
export const HOLES = 'aggregate.holes';
/** More holes than this are merged into covering ranges (re-reading extra seqs only recomputes). */
const MAX_HOLES = 200;

/** Read the state and hold it for this transaction (a second run waits for the first). */
export async function lockState(db: Db, now: number): Promise<AggregateState> {
  const trx = db.knex;
  const read = async (): Promise<Array<{ key: string; value: string | null }>> => forUpdate(db, trx('job_state').whereIn('key', [WATERMARK, HOLES]));
  let rows = await read();
  if (rows.length < 2) {
    // First run only (one round trip less on every other).
    await trx('job_state')
      .insert([
        { key: WATERMARK, value: null, updated_at: now },
        { key: HOLES, value: '[]', updated_at: now },
      ])
      .onConflict('key')
      .ignore();
    rows = await read();
  }
  return stateOf(rows);
}

/** The state as a reader sees it, without taking the run's lock. */
export async function readState(db: Db): Promise<AggregateState> {
  return stateOf(await db.knex('job_state').whereIn('key', [WATERMARK, HOLES]).select('key', 'value'));
}

function stateOf(rows: Array<{ key: string; value: string | null }>): AggregateState {
  const get = (k: string) => rows.find((r) => r.key === k)?.value ?? null;
  const w = get(WATERMARK);
  return { watermark: w === null ? null : Number(w), holes: JSON.parse(get(HOLES) ?? '[]') as Hole[] };
}

export async function saveState(db: Db, state: AggregateState, now: number): Promise<void> {
  // One statement for both rows.
  await db.knex.raw('UPDATE job_state SET value = CASE key WHEN ? THEN ? ELSE ? END, updated_at = ? WHERE key IN (?, ?)', [
    WATERMARK,
    state.watermark === null ? null : String(state.watermark),
    JSON.stringify(state.holes),
    now,
    WATERMARK,
    HOLES,
  ]);
}

/** Keep at most MAX_HOLES ranges by merging the closest neighbours (keeping the newest xid). */
export function capHoles(holes: Hole[]): Hole[] {
  const sorted = [...holes].sort((a, b) => a.from - b.from);
  if (sorted.length <= MAX_HOLES) return sorted;
  // Join each hole to its successor across the smallest distances until few enough remain.
  const joins = sorted
    .slice(0, -1)
    .map((h, i) => ({ i, distance: sorted[i + 1].from - h.to }))
    .sort((a, b) => a.distance - b.distance)
    .slice(0, sorted.length - MAX_HOLES);
  const joinNext = new Set(joins.map((j) => j.i));
  const out: Hole[] = [];
  let cur = sorted[0];
  for (let i = 1; i < sorted.length; i++) {
    const h = sorted[i];
    if (joinNext.has(i - 1)) cur = { from: cur.from, to: Math.max(cur.to, h.to), xid: BigInt(cur.xid) > BigInt(h.xid) ? cur.xid : h.xid };
    else {
      out.push(cur);
      cur = h;
    }
  }
  out.push(cur);
  return out;
}

/** SQL condition on events `e`: seq in (after, upTo]. */
export function seqRange(after: number, upTo: number): { sql: string; bindings: number[] } {
  return { sql: '(e.seq > ? AND e.seq <= ?)', bindings: [after, upTo] };
}

/** SQL condition on events `e`: seq in one of the holes (null when there are none). */
export function inHoles(holes: Hole[]): { sql: string; bindings: number[] } | null {
  if (holes.length === 0) return null;
  return {
    sql: `(${holes.map(() => '(e.seq >= ? AND e.seq <= ?)').join(' OR ')})`,
    bindings: holes.flatMap((h) => [h.from, h.to]),
  };
}
