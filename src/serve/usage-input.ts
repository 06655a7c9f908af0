import { ALIASES } from '../ingest/fields.js';
import type { UsageInput } from '../ingest/record.js';

/**
 * An HTTP event body → the ingest input. Only names are mapped, with ingest's aliases
 * (DESIGN.md §4), so a JSON event means the same over HTTP and in a file. Values pass
 * through untouched: recordUsage's validator judges them (type, quantity, time, metadata).
 */
export type ApiEvent = { ok: true; input: UsageInput } | { ok: false; field: string; reason: string };

// null when a name is given as null and none has a value: "quantity": null is then rejected
// as empty, while a missing quantity counts 1.
function pick(o: Record<string, unknown>, names: readonly string[]): any {
  let nulled = false;
  for (const n of names) {
    if (o[n] !== undefined && o[n] !== null) return o[n];
    if (o[n] === null) nulled = true;
  }
  return nulled ? null : undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function toUsageInput(raw: unknown): ApiEvent {
  if (!isObject(raw)) return { ok: false, field: 'event', reason: 'each event must be a JSON object' };
  return {
    ok: true,
    input: {
      tenantId: pick(raw, ALIASES.tenant_id),
      featureKey: pick(raw, ALIASES.feature),
      quantity: pick(raw, ALIASES.quantity),
      occurredAt: pick(raw, ALIASES.occurred_at),
      eventId: pick(raw, ALIASES.event_id),
      sourceService: pick(raw, ALIASES.source_service),
      sourceEntityId: pick(raw, ALIASES.source_entity_id),
      userId: pick(raw, ALIASES.user_id),
      metadata: pick(raw, ALIASES.metadata),
    },
  };
}

/** The tenant an event names, for matching a JWT's tenant claim before anything else runs. */
export function eventTenant(raw: unknown): string | null {
  if (!isObject(raw)) return null;
  const v = pick(raw, ALIASES.tenant_id);
  return typeof v === 'string' || typeof v === 'number' ? String(v).trim() : null;
}
