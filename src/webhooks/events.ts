import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';

/**
 * The event outbox (DESIGN.md §15). An event is written in the transaction of the change
 * that causes it, with its exact JSON body: a redelivery sends the stored text, never a
 * re-rendering. Each enabled endpoint whose filter matches at that moment gets a delivery row
 * (an endpoint added later does not receive older events).
 */

export const EVENT_TYPES = [
  'alert.triggered',
  'invoice.created',
  'invoice.finalized',
  'invoice.paid',
  'invoice.payment_failed',
  'credit.low',
  'credit.depleted',
  'subscription.changed',
  'threshold.invoiced',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface NewEvent {
  type: EventType;
  /** null only for an event that belongs to no tenant. */
  tenantId: string | null;
  data: unknown;
  at: Instant;
}

export interface EventBody {
  id: string;
  type: EventType;
  /** Unix seconds. */
  created: number;
  data: unknown;
}

export const newEventId = () => `evt_${randomBytes(12).toString('hex')}`;
export const newDeliveryId = () => `whd_${randomBytes(12).toString('hex')}`;

/** Whether an endpoint's filter (event types, or "*") takes this type. */
export function filterMatches(filter: readonly string[], type: string): boolean {
  return filter.includes('*') || filter.includes(type);
}

/** Parse `--events a,b,...`: known types or "*"; one error line naming the bad ones. */
export function parseEventFilter(raw: string | undefined): string[] {
  if (raw === undefined) return ['*'];
  const names = [...new Set(raw.split(',').map((s) => s.trim()).filter(Boolean))];
  if (names.length === 0) throw new BillingError('usage', `--events must list event types (${EVENT_TYPES.join(', ')}) or "*"`);
  const unknown = names.filter((n) => n !== '*' && !(EVENT_TYPES as readonly string[]).includes(n));
  if (unknown.length > 0) {
    throw new BillingError('usage', `--events: unknown event type${unknown.length > 1 ? 's' : ''} ${unknown.map((u) => `"${u}"`).join(', ')} (types: ${EVENT_TYPES.join(', ')}, or "*")`);
  }
  return names.includes('*') ? ['*'] : names;
}

/**
 * Write one event and its deliveries inside the caller's transaction, so the event exists
 * exactly when the change that caused it committed. Returns the event id.
 */
export async function emitEvent(trx: Knex | Knex.Transaction, e: NewEvent): Promise<string> {
  return (await emitEvents(trx, [e]))[0];
}

const CHUNK = 500;

/** emitEvent for many events at once (bulk imports): the endpoints are read once. */
export async function emitEvents(trx: Knex | Knex.Transaction, list: NewEvent[]): Promise<string[]> {
  if (list.length === 0) return [];
  const endpoints = (await trx('webhook_endpoints').where('enabled', true).select('id', 'events').orderBy('id')).map((ep) => ({
    id: ep.id as string,
    filter: JSON.parse(ep.events) as string[],
  }));
  const events: object[] = [];
  const deliveries: object[] = [];
  const ids = list.map((e) => {
    const id = newEventId();
    const body: EventBody = { id, type: e.type, created: Math.floor(e.at / 1000), data: e.data };
    events.push({ id, tenant_id: e.tenantId, type: e.type, created_at: e.at, body: JSON.stringify(body) });
    for (const ep of endpoints) {
      if (!filterMatches(ep.filter, e.type)) continue;
      deliveries.push({
        id: newDeliveryId(),
        tenant_id: e.tenantId,
        event_id: id,
        endpoint_id: ep.id,
        status: 'pending',
        attempts: 0,
        next_attempt_at: e.at,
        created_at: e.at,
        updated_at: e.at,
      });
    }
    return id;
  });
  for (let i = 0; i < events.length; i += CHUNK) await trx('webhook_events').insert(events.slice(i, i + CHUNK));
  for (let i = 0; i < deliveries.length; i += CHUNK) await trx('webhook_deliveries').insert(deliveries.slice(i, i + CHUNK));
  return ids;
}
