import type { ComponentType } from 'react';

/**
 * An ink view that loads lazily (ink and react are only imported on first use, so commands
 * that never draw stay fast) and redraws at most every `intervalMs`. The core never sees
 * it: commands feed it from the core's progress callbacks.
 */
export interface LiveView<P> {
  update(props: P): void;
  /** Resolves once the first frame is drawn (ink loaded and rendered). */
  readonly drawn: Promise<void>;
  /** Draw the final props, unmount, and resolve once ink has flushed. */
  finish(props?: P): Promise<void>;
}

type Inked = { rerender(node: unknown): void; unmount(): void; waitUntilExit(): Promise<unknown> };

export function liveView<P extends object>(
  loadComponent: () => Promise<ComponentType<P>>,
  stream: NodeJS.WriteStream,
  initial: P,
  intervalMs = 100,
): LiveView<P> {
  let props = initial;
  let instance: Inked | null = null;
  let createElement: ((c: ComponentType<P>, p: P) => unknown) | null = null;
  let component: ComponentType<P> | null = null;
  let timer: NodeJS.Timeout | null = null;
  let dirty = false;

  const ready = (async () => {
    const [{ render }, react, c] = await Promise.all([import('ink'), import('react'), loadComponent()]);
    component = c;
    createElement = react.createElement as unknown as (c: ComponentType<P>, p: P) => unknown;
    instance = render(createElement(c, props) as Parameters<typeof render>[0], {
      stdout: stream,
      patchConsole: false,
      exitOnCtrlC: false,
    }) as unknown as Inked;
  })();
  ready.catch(() => {}); // surfaced by finish()

  const draw = () => {
    timer = null;
    if (!dirty || !instance || !component || !createElement) return;
    dirty = false;
    instance.rerender(createElement(component, props));
  };

  return {
    drawn: ready,
    update(next: P) {
      props = next;
      dirty = true;
      if (!timer) {
        timer = setTimeout(draw, intervalMs);
        timer.unref();
      }
    },
    async finish(next?: P) {
      if (next) props = next;
      if (timer) clearTimeout(timer);
      timer = null;
      await ready;
      dirty = true;
      draw();
      instance!.unmount();
      await instance!.waitUntilExit();
    },
  };
}

/** Draw with ink only for a person at a terminal: not for pipes, --json or NO_COLOR. */
export function isInteractive(stream: NodeJS.WriteStream, opts: { json?: boolean; env?: NodeJS.ProcessEnv } = {}): boolean {
  const env = opts.env ?? process.env;
  return Boolean(stream.isTTY) && !opts.json && !env.NO_COLOR && env.TERM !== 'dumb';
}
