import type { IncomingMessage } from 'node:http';
import type { Db } from '../../storage/db.js';
import type { Client } from '../auth.js';
import type { UsageGroupCommit } from '../group-commit.js';
import type { Metrics } from '../metrics.js';

export interface RouteContext {
  db: Db;
  req: IncomingMessage;
  params: Record<string, string>;
  query: URLSearchParams;
  /** The request body, read by the server per the route's `body`: parsed JSON, or raw bytes. */
  body: unknown;
  /** The authenticated caller; null on public routes (health, metrics). */
  client: Client | null;
  /** The billing clock for this request. */
  now: number;
  maxBatch: number;
  /** null: the Stripe webhook route answers 404. */
  stripeWebhookSecret: string | null;
  metrics: Metrics;
  /** Days an event may lie before its tenant's creation (ServeConfig.backfillDays). */
  backfillDays: number | undefined;
  /** Records usage, sharing transactions between concurrent requests. */
  usage: UsageGroupCommit;
}

export interface Reply {
  status: number;
  /** Serialized as JSON unless `text` is given. */
  body?: unknown;
  text?: string;
  contentType?: string;
}

export interface Route {
  method: 'GET' | 'POST';
  /** Path template; `:name` segments become params. Also the metrics label. */
  path: string;
  /** Whether the caller must present a service secret or JWT. */
  auth: boolean;
  /** How the server reads the body before handling: JSON, raw bytes (signed payloads), none. */
  body: 'json' | 'raw' | 'none';
  /** Whether the handler waits its turn under the server's concurrency limit (database work). */
  queued: boolean;
  handle(ctx: RouteContext): Promise<Reply>;
}
