import { Box, Text } from 'ink';
import { bar, eta, formatCount, formatDuration, rate } from './format.js';

export interface ProgressBarProps {
  label: string;
  done: number;
  /** Known total (rows, bytes, stages), or null/undefined when streaming an unknown amount. */
  total?: number | null;
  unit?: string;
  /** Rows handled, when progress is measured in something else (bytes of a file). */
  rows?: number;
  elapsedMs: number;
  width?: number;
  /** Units per second; off where the units are too coarse to have a rate (stages). */
  showRate?: boolean;
}

/** One line: label, bar and percentage when the total is known, count, rate and ETA. */
export function ProgressBar({ label, done, total, unit = 'rows', rows, elapsedMs, width = 24, showRate = true }: ProgressBarProps) {
  // The speed people care about is rows/s, even when the bar follows bytes.
  const counted = rows ?? done;
  const countUnit = rows === undefined ? unit : 'rows';
  const r = rate(counted, elapsedMs);
  const left = eta(done, total, elapsedMs);
  const known = typeof total === 'number' && total > 0;
  // Before the first batch: the bar is up at once, saying what it waits for.
  const waiting = done === 0 && rows === 0;
  return (
    <Box gap={1}>
      <Text bold>{label}</Text>
      {known ? (
        <>
          <Text color="green">{bar(done / total, width)}</Text>
          <Text>{`${Math.floor((Math.min(done, total) * 100) / total)}%`}</Text>
          <Text>{waiting ? 'reading…' : rows === undefined ? `${formatCount(done)}/${formatCount(total)} ${unit}` : `${formatCount(rows)} rows`}</Text>
        </>
      ) : (
        <Text>{waiting ? 'reading…' : `${formatCount(counted)} ${countUnit}`}</Text>
      )}
      {showRate && r !== null && <Text dimColor>{`${formatCount(r)} ${countUnit}/s`}</Text>}
      <Text dimColor>{left === null ? `${formatDuration(elapsedMs)}` : `ETA ${formatDuration(left)}`}</Text>
    </Box>
  );
}
