import { Box, Text } from 'ink';
import { bar, eta, formatCount, formatDuration, rate } from './format.js';

export interface ProgressBarProps {
  label: string;
  done: number;
  /** Known total (rows, bytes, stages), or null/undefined when streaming an unknown amount. */
  total?: number | null;
  unit?: string;
  elapsedMs: number;
  width?: number;
}

/** One line: label, bar and percentage when the total is known, count, rate and ETA. */
export function ProgressBar({ label, done, total, unit = 'rows', elapsedMs, width = 24 }: ProgressBarProps) {
  const r = rate(done, elapsedMs);
  const left = eta(done, total, elapsedMs);
  const known = typeof total === 'number' && total > 0;
  return (
    <Box gap={1}>
      <Text bold>{label}</Text>
      {known ? (
        <>
          <Text color="green">{bar(done / total, width)}</Text>
          <Text>{`${Math.floor((Math.min(done, total) * 100) / total)}%`}</Text>
          <Text>{`${formatCount(done)}/${formatCount(total)} ${unit}`}</Text>
        </>
      ) : (
        <Text>{`${formatCount(done)} ${unit}`}</Text>
      )}
      <Text dimColor>{r === null ? '' : `${formatCount(r)} ${unit}/s`}</Text>
      <Text dimColor>{left === null ? `${formatDuration(elapsedMs)}` : `ETA ${formatDuration(left)}`}</Text>
    </Box>
  );
}
