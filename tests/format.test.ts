import { describe, expect, it } from 'vitest';
import { checkTimeZone, formatPeriod } from '../src/format/period.js';
import { groupDigits, truncateCell } from '../src/format/table.js';

describe('formatPeriod', () => {
  it.each([
    ['2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', 'UTC', '2026-01-01 – 2026-01-31'],
    ['2026-01-31T00:00:00Z', '2026-02-28T00:00:00Z', 'UTC', '2026-01-31 – 2026-02-27'],
    ['2028-02-01T00:00:00Z', '2028-03-01T00:00:00Z', 'UTC', '2028-02-01 – 2028-02-29'],
    ['2026-01-15T14:30:00Z', '2026-02-15T14:30:00Z', 'UTC', '2026-01-15 14:30 – 2026-02-15 14:30 UTC'],
    ['2026-01-15T14:30:05Z', '2026-02-15T14:30:05Z', 'UTC', '2026-01-15 14:30:05 – 2026-02-15 14:30:05 UTC'],
    // Local midnights in the zone show as days; UTC midnights elsewhere show their local times.
    ['2025-12-31T23:00:00Z', '2026-01-31T23:00:00Z', 'Europe/Berlin', '2026-01-01 – 2026-01-31'],
    ['2026-03-01T00:00:00Z', '2026-04-01T00:00:00Z', 'America/New_York', '2026-02-28 19:00 – 2026-03-31 20:00 America/New_York'],
  ])('%s – %s in %s', (start, end, zone, want) => {
    expect(formatPeriod({ start, end }, zone)).toBe(want);
    expect(formatPeriod({ start: Date.parse(start), end: Date.parse(end) }, zone)).toBe(want);
  });

  it('shows a stored time out of range instead of throwing', () => {
    expect(formatPeriod({ start: 0, end: 9e18 })).toBe('1970-01-01T00:00:00.000Z – invalid time (9000000000000000000)');
  });

  it('accepts IANA zones only', () => {
    expect(checkTimeZone('Asia/Tokyo')).toBe('Asia/Tokyo');
    expect(() => checkTimeZone('Mars/Olympus')).toThrow(/--tz "Mars\/Olympus" is not a time zone/);
  });
});

describe('table cells', () => {
  it.each([
    ['0', '0'], ['999', '999'], ['1000', '1,000'], ['12345678', '12,345,678'], ['-1234567.891', '-1,234,567.891'],
    ['1234.56789', '1,234.56789'], ['unlimited', 'unlimited'], ['1e6', '1e6'],
  ])('groups %s as %s', (raw, want) => {
    expect(groupDigits(raw)).toBe(want);
  });

  it('shortens long values to the width with an ellipsis', () => {
    expect(truncateCell('a'.repeat(24))).toBe('a'.repeat(24));
    expect(truncateCell('a'.repeat(25))).toBe(`${'a'.repeat(23)}…`);
    expect(truncateCell('tenant-with-a-long-name', 10)).toBe('tenant-wi…');
  });
});
