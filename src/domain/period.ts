/** Instants are UTC epoch milliseconds everywhere inside the core. */
export type Instant = number;

export type Interval = 'month' | 'year';

/** A half-open period [start, end). */
export interface Period {
  start: Instant;
  end: Instant;
}

export function contains(p: Period, t: Instant): boolean {
  return t >= p.start && t < p.end;
}

export function overlaps(a: Period, b: Period): boolean {
  return a.start < b.end && b.start < a.end;
}

/** Overlap of two periods, or null when they do not meet. */
export function intersect(a: Period, b: Period): Period | null {
  const start = Math.max(a.start, b.start);
  const end = Math.min(a.end, b.end);
  return start < end ? { start, end } : null;
}

export function periodSeconds(p: Period): number {
  return Math.round((p.end - p.start) / 1000);
}

export function toIso(t: Instant): string {
  return new Date(t).toISOString();
}

/** toIso for printing stored times: one out of Date's range is shown, not thrown. */
export function displayInstant(t: Instant): string {
  const d = new Date(t);
  if (!Number.isNaN(d.getTime())) return d.toISOString();
  return `invalid time (${Number.isFinite(t) ? BigInt(Math.trunc(t)).toString() : String(t)})`;
}

export function periodToJson(p: Period): { start: string; end: string } {
  return { start: toIso(p.start), end: toIso(p.end) };
}

function daysInMonth(year: number, month0: number): number {
  return new Date(Date.UTC(year, month0 + 1, 0)).getUTCDate();
}

/**
 * The anchor plus `months` months, keeping the anchor's day of month (clamped to the
 * month's last day) and time of day: 31 Jan +1 → 28/29 Feb, +2 → 31 Mar.
 */
export function addMonthsClamped(anchor: Instant, months: number): Instant {
  const a = new Date(anchor);
  const total = a.getUTCFullYear() * 12 + a.getUTCMonth() + months;
  const year = Math.floor(total / 12);
  const month0 = total - year * 12;
  const day = Math.min(a.getUTCDate(), daysInMonth(year, month0));
  return Date.UTC(
    year,
    month0,
    day,
    a.getUTCHours(),
    a.getUTCMinutes(),
    a.getUTCSeconds(),
    a.getUTCMilliseconds(),
  );
}

function monthsPerInterval(interval: Interval): number {
  return interval === 'year' ? 12 : 1;
}

/** The k-th period after (k < 0: before) the one starting at the anchor. */
export function nthPeriod(anchor: Instant, interval: Interval, k: number): Period {
  const m = monthsPerInterval(interval);
  return { start: addMonthsClamped(anchor, k * m), end: addMonthsClamped(anchor, (k + 1) * m) };
}

/** Index k of the anniversary period that contains t. */
export function periodIndex(anchor: Instant, interval: Interval, t: Instant): number {
  const a = new Date(anchor);
  const d = new Date(t);
  const monthDiff = (d.getUTCFullYear() - a.getUTCFullYear()) * 12 + (d.getUTCMonth() - a.getUTCMonth());
  let k = Math.floor(monthDiff / monthsPerInterval(interval));
  // The estimate is off by at most one in either direction (day/time within the month).
  while (addMonthsClamped(anchor, k * monthsPerInterval(interval)) > t) k--;
  while (addMonthsClamped(anchor, (k + 1) * monthsPerInterval(interval)) <= t) k++;
  return k;
}

/** The anniversary period (anchor, interval) that contains instant t. */
export function periodContaining(anchor: Instant, interval: Interval, t: Instant): Period {
  return nthPeriod(anchor, interval, periodIndex(anchor, interval, t));
}

/** Calendar month containing t: what a tenant without a subscription is measured on. */
export function calendarMonth(t: Instant): Period {
  const d = new Date(t);
  return {
    start: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1),
    end: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1),
  };
}

/** All anniversary periods that overlap [from, to). */
export function periodsBetween(anchor: Instant, interval: Interval, from: Instant, to: Instant): Period[] {
  const out: Period[] = [];
  if (to <= from) return out;
  let k = periodIndex(anchor, interval, from);
  for (;;) {
    const p = nthPeriod(anchor, interval, k);
    if (p.start >= to) break;
    out.push(p);
    k++;
  }
  return out;
}

/**
 * When an event may have occurred: 1970-01-01 to the end of 9999. Ingest refuses times
 * outside it and aggregation skips (and reports) any such event already stored.
 */
export const EVENT_TIMES: Period = { start: 0, end: Date.UTC(10000, 0, 1) };

/** The range of a JavaScript Date: an instant outside it has no calendar date. */
export const MAX_INSTANT = 8.64e15;

const isLeap = (y: number) => y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
const MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Whether the fields name a real date and time of day (Date.parse rolls 30 Feb over to 2 Mar). */
export function isCalendarDate(y: number, month: number, day: number, hour = 0, minute = 0, second = 0): boolean {
  if (month < 1 || month > 12 || day < 1) return false;
  const days = month === 2 && isLeap(y) ? 29 : MONTH_DAYS[month - 1];
  return day <= days && hour <= 23 && minute <= 59 && second <= 59;
}

// Require an explicit offset on date-times: a local time would depend on the machine.
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-](\d{2}):?(\d{2})))?$/i;

/**
 * Parse an instant: ISO 8601 with an offset (or a bare date, taken as UTC midnight), or epoch
 * seconds / milliseconds (numbers below 1e11 are seconds). Returns null when unparseable,
 * when the date does not exist (30 February, hour 24) or when it is outside a Date's range.
 */
export function parseInstant(raw: unknown): Instant | null {
  if (typeof raw === 'number') {
    if (!Number.isFinite(raw)) return null;
    const t = Math.abs(raw) < 1e11 ? Math.round(raw * 1000) : Math.round(raw);
    return Math.abs(t) <= MAX_INSTANT ? t : null;
  }
  if (typeof raw !== 'string') return null;
  const s = raw.trim();
  if (s === '') return null;
  if (/^-?\d+(\.\d+)?$/.test(s)) return parseInstant(Number(s));
  const m = ISO.exec(s);
  if (!m) return null;
  const [, y, mo, d, h, mi, sec, , oh, om] = m;
  if (!isCalendarDate(+y, +mo, +d, h === undefined ? 0 : +h, +mi || 0, sec === undefined ? 0 : +sec)) return null;
  if (oh !== undefined && (+oh > 23 || +om > 59)) return null;
  const t = Date.parse(h === undefined ? `${s}T00:00:00Z` : s.replace(' ', 'T'));
  return Number.isNaN(t) ? null : t;
}
