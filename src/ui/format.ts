/** Plain-text pieces shared by the ink components and the non-TTY output. */

const GROUP = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function formatCount(n: number): string {
  return GROUP.format(n);
}

/** "1.2s", "3m 05s", "2h 04m": short enough for one status line. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

/** Units per second, or null before there is anything to measure. */
export function rate(done: number, elapsedMs: number): number | null {
  return elapsedMs > 0 && done > 0 ? (done * 1000) / elapsedMs : null;
}

/** Milliseconds left at the current rate, or null when unknown. */
export function eta(done: number, total: number | null | undefined, elapsedMs: number): number | null {
  const r = rate(done, elapsedMs);
  if (!total || r === null) return null;
  return (Math.max(0, total - done) * 1000) / r;
}

/** A fixed-width bar: "█████░░░░░". */
export function bar(fraction: number, width: number): string {
  const f = Math.min(1, Math.max(0, fraction));
  const full = Math.round(f * width);
  return '█'.repeat(full) + '░'.repeat(width - full);
}

/** "5.0s ago" for a past instant (a clock read a moment after `now` still counts as past). */
export function ago(at: number, now: number): string {
  return `${formatDuration(Math.max(0, now - at))} ago`;
}

/** "in 4m 10s" / "5s ago" relative to now. */
export function relative(at: number | null, now: number): string {
  if (at === null) return '-';
  const d = at - now;
  return d >= 0 ? `in ${formatDuration(d)}` : `${formatDuration(-d)} ago`;
}
