import { Box, Static, Text } from 'ink';
import { formatDuration } from './format.js';
import { ProgressBar } from './progress-bar.js';

export interface FinishedStage {
  job: string;
  status: string;
  durationMs: number;
  detail: string;
}

export interface RunProgressProps {
  finished: FinishedStage[];
  current: string | null;
  total: number;
  elapsedMs: number;
}

const MARK: Record<string, { mark: string; color: string }> = {
  succeeded: { mark: '✓', color: 'green' },
  planned: { mark: '•', color: 'cyan' },
  skipped: { mark: '-', color: 'yellow' },
  not_run: { mark: '-', color: 'gray' },
  failed: { mark: '✗', color: 'red' },
};

/** `billing run` on a TTY: finished stages scroll up (Static), the bar tracks the stages. */
export function RunProgress({ finished, current, total, elapsedMs }: RunProgressProps) {
  return (
    <Box flexDirection="column">
      <Static items={finished}>
        {(s) => {
          const m = MARK[s.status] ?? { mark: '?', color: 'white' };
          return (
            <Box key={s.job} gap={1}>
              <Text color={m.color}>{m.mark}</Text>
              <Text>{s.job.padEnd(12)}</Text>
              <Text dimColor>{formatDuration(s.durationMs).padStart(7)}</Text>
              <Text>{s.detail}</Text>
            </Box>
          );
        }}
      </Static>
      {current !== null && (
        <ProgressBar label={current} done={finished.length} total={total} unit="stages" elapsedMs={elapsedMs} showRate={false} />
      )}
    </Box>
  );
}
