import { BillingError } from '../domain/errors.js';

/** The event fields ingest understands, by their canonical (column) names. */
export const FIELDS = [
  'tenant_id',
  'feature',
  'quantity',
  'occurred_at',
  'event_id',
  'source_service',
  'source_entity_id',
  'user_id',
  'metadata',
] as const;
export type Field = (typeof FIELDS)[number];

/** Input names per field, first match wins (DESIGN.md §4). */
export const ALIASES: Readonly<Record<Field, readonly string[]>> = {
  tenant_id: ['tenant_id', 'tenantId', 'organization_id', 'organizationId', 'org_id', 'subject'],
  feature: ['usage_type', 'usageType', 'feature', 'featureId', 'feature_id', 'type'],
  quantity: ['quantity', 'qty', 'value'],
  occurred_at: ['occurred_at', 'timestamp', 'time'],
  event_id: ['event_id', 'id', 'idempotency_key'],
  source_service: ['source_service', 'sourceService', 'serviceId', 'source'],
  source_entity_id: ['source_entity_id', 'sourceEntityId'],
  user_id: ['user_id', 'userId'],
  metadata: ['metadata'],
};

/** `--map col=field`: input name -> canonical field. */
export type FieldMap = ReadonlyMap<string, Field>;

const FIELD_BY_NAME = new Map<string, Field>();
for (const f of FIELDS) {
  FIELD_BY_NAME.set(f, f);
  for (const a of ALIASES[f]) if (!FIELD_BY_NAME.has(a)) FIELD_BY_NAME.set(a, f);
}

/** Parse `--map` entries ("units=quantity", "customer=tenantId"); the target may be any alias. */
export function parseFieldMap(entries: readonly string[]): Map<string, Field> {
  const map = new Map<string, Field>();
  for (const e of entries) {
    const eq = e.lastIndexOf('=');
    const col = eq > 0 ? e.slice(0, eq).trim() : '';
    const target = eq > 0 ? e.slice(eq + 1).trim() : '';
    const field = FIELD_BY_NAME.get(target);
    if (!col || !field) {
      throw new BillingError(
        'usage',
        `--map "${e}" must be col=field with field one of ${FIELDS.join(', ')} (or one of their aliases)`,
      );
    }
    map.set(col, field);
  }
  return map;
}

/** Input names to look for, per field: mapped names first, then the aliases. */
export function lookupOrder(map: FieldMap): Record<Field, string[]> {
  const out = {} as Record<Field, string[]>;
  for (const f of FIELDS) {
    const mapped = [...map].filter(([, target]) => target === f).map(([col]) => col);
    // A column mapped to another field no longer counts as this field's alias.
    out[f] = [...mapped, ...ALIASES[f].filter((a) => !map.has(a))];
  }
  return out;
}

/** Column index (or -1) and column name per field, for a CSV header. */
export interface HeaderBinding {
  index: Record<Field, number>;
  name: Record<Field, string>;
}

export function bindHeader(header: readonly string[], map: FieldMap): HeaderBinding {
  const order = lookupOrder(map);
  const index = {} as Record<Field, number>;
  const name = {} as Record<Field, string>;
  for (const f of FIELDS) {
    index[f] = -1;
    name[f] = f;
    for (const candidate of order[f]) {
      const i = header.indexOf(candidate);
      if (i >= 0) {
        index[f] = i;
        name[f] = candidate;
        break;
      }
    }
  }
  return { index, name };
}
