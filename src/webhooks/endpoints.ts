import { randomBytes } from 'node:crypto';
import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { bool } from '../storage/sql.js';
import { parseEventFilter } from './events.js';

/** Webhook endpoints. The secret is stored for signing only: nothing here returns it. */

export interface Endpoint {
  id: string;
  url: string;
  /** Event types, or ["*"]. */
  events: string[];
  enabled: boolean;
  createdAt: Instant;
}

type Opts = { now: Instant; actor: string };

export function endpointFromRow(r: Record<string, any>): Endpoint {
  return { id: r.id, url: r.url, events: JSON.parse(r.events), enabled: bool(r.enabled), createdAt: Number(r.created_at) };
}

/** An http(s) URL without credentials (they would show in listings); one error line otherwise. */
export function checkUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new BillingError('usage', `webhook URL "${raw}" is not a valid URL (e.g. https://example.com/hooks)`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new BillingError('usage', `webhook URL must be http or https (got ${u.protocol.replace(/:$/, '')})`);
  if (u.username || u.password) throw new BillingError('usage', 'webhook URL must not carry a user or password; the signature authenticates the sender');
  return u.toString();
}

function checkSecret(secret: string | undefined): string {
  if (secret === undefined || secret.length === 0) throw new BillingError('usage', 'webhook add needs --secret S (the key receivers verify signatures with)');
  if (secret.length < 16) throw new BillingError('usage', '--secret must be at least 16 characters');
  return secret;
}

export async function addEndpoint(db: Db, input: { url: string; secret: string | undefined; events?: string }, opts: Opts): Promise<Endpoint> {
  const url = checkUrl(input.url);
  const secret = checkSecret(input.secret);
  const events = parseEventFilter(input.events);
  const ep: Endpoint = { id: `we_${randomBytes(8).toString('hex')}`, url, events, enabled: true, createdAt: opts.now };
  await db.tx(async (t) => {
    await t.knex('webhook_endpoints').insert({ id: ep.id, url, secret, events: JSON.stringify(events), enabled: true, created_at: opts.now, updated_at: opts.now });
    await writeAudit(t.knex, { at: opts.now, actor: opts.actor, entity: 'webhook_endpoint', entityId: ep.id, action: 'create', after: ep });
  });
  return ep;
}

export async function listEndpoints(db: Db): Promise<Endpoint[]> {
  return (await db.knex('webhook_endpoints').select('id', 'url', 'events', 'enabled', 'created_at').orderBy(['created_at', 'id'])).map(endpointFromRow);
}

/** Remove an endpoint; its deliveries not yet made are dropped with it (delivered ones stay listed). */
export async function removeEndpoint(db: Db, id: string, opts: Opts): Promise<{ endpoint: Endpoint; dropped: number }> {
  return db.tx(async (t) => {
    const row = await t.knex('webhook_endpoints').where({ id }).select('id', 'url', 'events', 'enabled', 'created_at').first();
    if (!row) throw new BillingError('not_found', `no webhook endpoint "${id}"; list them with \`billing webhook list\``);
    const endpoint = endpointFromRow(row);
    const dropped = await t.knex('webhook_deliveries').where({ endpoint_id: id }).whereNot('status', 'delivered').delete();
    await t.knex('webhook_endpoints').where({ id }).delete();
    await writeAudit(t.knex, { at: opts.now, actor: opts.actor, entity: 'webhook_endpoint', entityId: id, action: 'remove', before: endpoint, after: { droppedDeliveries: dropped } });
    return { endpoint, dropped };
  });
}
