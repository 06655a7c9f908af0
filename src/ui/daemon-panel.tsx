import { Box, Static, Text } from 'ink';
import type { DaemonState } from '../jobs/daemon.js';
import { ago, formatDuration, relative } from './format.js';

export interface LogLine {
  id: number;
  text: string;
  level: 'info' | 'warn' | 'error';
}

export interface DaemonPanelProps {
  state: DaemonState;
  now: number;
  log: LogLine[];
}

const STATE_COLOR: Record<string, string> = { idle: 'gray', queued: 'yellow', running: 'cyan' };
const STATUS_COLOR: Record<string, string> = { succeeded: 'green', failed: 'red', skipped: 'yellow' };

const LAST = 34;
/** A fixed-width cell that always leaves a space before the next one. */
const col = (s: string, width: number) => (s.length < width ? s.padEnd(width) : `${s} `);

/** `billing daemon` on a TTY: log lines scroll above a live table of the jobs. */
export function DaemonPanel({ state, now, log }: DaemonPanelProps) {
  return (
    <Box flexDirection="column">
      <Static items={log}>
        {(l) => (
          <Text key={l.id} color={l.level === 'error' ? 'red' : l.level === 'warn' ? 'yellow' : undefined}>
            {l.text}
          </Text>
        )}
      </Static>
      <Box flexDirection="column" borderStyle="round" paddingX={1}>
        <Text bold>
          {`billing daemon · ${state.timezone} · ${state.owner}${state.stopping ? ' · stopping' : ''}`}
        </Text>
        <Box>
          <Text bold>{col('JOB', 14)}{col('SCHEDULE', 16)}{col('STATE', 9)}{col('LAST', LAST)}NEXT</Text>
        </Box>
        {state.jobs.map((j) => (
          <Box key={j.job}>
            <Text>{col(j.job, 14)}</Text>
            <Text dimColor>{col(j.schedule, 16)}</Text>
            <Text color={STATE_COLOR[j.state]}>{col(j.state, 9)}</Text>
            <Text color={j.last ? STATUS_COLOR[j.last.status] : 'gray'}>
              {col(j.last ? `${j.last.status} ${ago(j.last.finishedAt, now)} (${formatDuration(j.last.durationMs)})` : '-', LAST)}
            </Text>
            <Text>{state.stopping ? '-' : relative(j.nextRunAt, now)}</Text>
          </Box>
        ))}
      </Box>
    </Box>
  );
}
