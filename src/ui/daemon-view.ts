import type { DaemonLogEntry, DaemonState } from '../jobs/daemon.js';
import type { DaemonPanelProps, LogLine } from './daemon-panel.js';
import { liveView } from './live.js';

// ink's <Static> remembers how many items it printed, so the array may only grow; lines
// already printed are swapped for one shared placeholder to keep memory flat.
const KEEP = 200;
const PRINTED: LogLine = { id: 0, text: '', level: 'info' };

/** A log entry as one human line for the panel (the JSON form is for pipes). */
export function humanLine(e: DaemonLogEntry): string {
  const { time, level: _level, msg, ...rest } = e;
  const parts = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
  return `${time.slice(11, 19)} ${msg} ${parts.join(' ')}`;
}

/** The daemon's live panel: feeds the DaemonPanel component from log entries and state. */
export async function createDaemonView(stream: NodeJS.WriteStream) {
  let id = 0;
  let props: DaemonPanelProps = {
    state: { owner: '', timezone: 'UTC', stopping: false, jobs: [] },
    now: Date.now(),
    log: [],
  };
  const view = liveView(async () => (await import('./daemon-panel.js')).DaemonPanel, stream, props, 200);
  const tick = setInterval(() => view.update((props = { ...props, now: Date.now() })), 1000);
  tick.unref();
  return {
    log(e: DaemonLogEntry) {
      const line: LogLine = { id: ++id, text: humanLine(e), level: e.level };
      const log = [...props.log, line];
      if (log.length > KEEP) log[log.length - KEEP - 1] = PRINTED;
      props = { ...props, now: Date.now(), log };
      view.update(props);
    },
    state(s: DaemonState) {
      props = { ...props, state: s, now: Date.now() };
      view.update(props);
    },
    async finish() {
      clearInterval(tick);
      await view.finish(props);
    },
  };
}
