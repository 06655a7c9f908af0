import type { AddressInfo } from 'node:net';
import { BillingError } from '../domain/errors.js';
import type { Db } from '../storage/db.js';
import type { ServeConfig } from './config.js';
import { createServer, stopServer } from './server.js';

export interface RunOptions {
  port: number;
  host: string;
  /** How long in-flight requests may take to finish once `stop` fires. */
  graceMs: number;
  /** Aborted by the caller (the CLI on SIGTERM/SIGINT) to shut down gracefully. */
  stop: AbortSignal;
  onListening?(url: string): void;
}

/** Serve until `stop` is aborted, then drain in-flight requests. The caller closes the db. */
export async function runServer(db: Db, config: ServeConfig, opts: RunOptions): Promise<void> {
  const server = createServer(db, config);
  await new Promise<void>((resolve, reject) => {
    const fail = (e: NodeJS.ErrnoException) =>
      reject(new BillingError('conflict', `cannot listen on ${opts.host}:${opts.port} (${e.code ?? e.message}); choose another --port or --host`));
    server.once('error', fail);
    server.listen(opts.port, opts.host, () => {
      server.off('error', fail);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  opts.onListening?.(`http://${address.includes(':') ? `[${address}]` : address}:${port}`);
  if (!opts.stop.aborted) await new Promise((resolve) => opts.stop.addEventListener('abort', resolve, { once: true }));
  await stopServer(server, opts.graceMs);
}
