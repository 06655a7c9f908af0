import { BillingError } from '../domain/errors.js';
import { displayInstant } from '../domain/period.js';

// The one way text output shows a period (JSON keeps full ISO instants with their zone).

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(zone, f);
  }
  return f;
}

/** An IANA time zone name (`Europe/Berlin`, `UTC`), or a usage error naming the flag. */
export function checkTimeZone(zone: string, flag = '--tz'): string {
  try {
    formatterFor(zone);
    return zone;
  } catch {
    throw new BillingError('usage', `${flag} "${zone}" is not a time zone (use an IANA name such as Europe/Berlin, or UTC)`);
  }
}

interface LocalTime {
  date: string;
  time: string;
  midnight: boolean;
}

function localTime(t: number, zone: string): LocalTime | null {
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return null;
  const p = Object.fromEntries(formatterFor(zone).formatToParts(d).map((x) => [x.type, x.value]));
  const year = p.year.length < 4 ? p.year.padStart(4, '0') : p.year;
  const seconds = p.second === '00' ? '' : `:${p.second}`;
  return {
    date: `${year}-${p.month}-${p.day}`,
    time: `${p.hour}:${p.minute}${seconds}`,
    midnight: p.hour === '00' && p.minute === '00' && p.second === '00' && d.getUTCMilliseconds() === 0,
  };
}

const instant = (t: number | string) => (typeof t === 'number' ? t : Date.parse(t));

/**
 * `2026-01-01 – 2026-01-31`: a period [start, end) whose bounds fall on midnight in `zone` shows
 * its days, the last one inclusive (an end of 2026-02-01T00:00 is the 31st). Bounds at another
 * time of day show both instants and the zone: `2026-01-15 14:30 – 2026-02-15 14:30 UTC`.
 */
export function formatPeriod(p: { start: number | string; end: number | string }, zone = 'UTC'): string {
  const [start, end] = [instant(p.start), instant(p.end)];
  const a = localTime(start, zone);
  const b = localTime(end, zone);
  if (!a || !b) return `${displayInstant(start)} – ${displayInstant(end)}`;
  if (a.midnight && b.midnight && end > start) return `${a.date} – ${localTime(end - 1, zone)!.date}`;
  return `${a.date} ${a.time} – ${b.date} ${b.time} ${zone}`;
}
