import { FIELDS, bindHeader, lookupOrder, type Field, type FieldMap, type HeaderBinding } from './fields.js';
import { JsonNumber } from './json.js';
import type { Invalid, RawEvent } from './validate.js';

/**
 * Turning one input record into a RawEvent, per format, and naming the input field behind a
 * canonical one for reject messages ("qty: ..." when the file calls it qty).
 */

export class CsvRows {
  private readonly binding: HeaderBinding;
  readonly width: number;

  constructor(
    readonly header: string[],
    map: FieldMap,
  ) {
    this.binding = bindHeader(header, map);
    this.width = header.length;
  }

  /** A row whose field count differs from the header's is rejected as a whole. */
  checkWidth(fields: readonly string[]): Invalid | null {
    if (fields.length === this.width) return null;
    return { field: 'row', reason: `has ${fields.length} fields, the header has ${this.width}` };
  }

  event(fields: readonly string[]): RawEvent {
    const ix = this.binding.index;
    return {
      tenant_id: cell(fields, ix.tenant_id),
      feature: cell(fields, ix.feature),
      quantity: cell(fields, ix.quantity),
      occurred_at: cell(fields, ix.occurred_at),
      event_id: cell(fields, ix.event_id),
      source_service: cell(fields, ix.source_service),
      source_entity_id: cell(fields, ix.source_entity_id),
      user_id: cell(fields, ix.user_id),
      metadata: cell(fields, ix.metadata),
    };
  }

  fieldName(field: Field): string {
    return this.binding.name[field] ?? field;
  }

  has(field: Field): boolean {
    return this.binding.index[field] >= 0;
  }
}

// The CSV reader left-trims; the right side is trimmed here (see readers/csv.ts).
function cell(fields: readonly string[], i: number): string | undefined {
  if (i < 0) return undefined;
  const v = fields[i];
  const n = v.length;
  return n !== 0 && v.charCodeAt(n - 1) <= 32 ? v.trimEnd() : v;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonNumber);

/** CloudEvents context attributes that carry a field (DESIGN.md §4). */
const CE_ATTRIBUTE: Partial<Record<Field, string>> = {
  tenant_id: 'subject',
  feature: 'type',
  event_id: 'id',
  occurred_at: 'time',
  source_service: 'source',
};

/** JSON-lines objects: plain events, or CloudEvents (recognised by `specversion`, or forced). */
export class JsonRows {
  private readonly order: Record<Field, string[]>;
  private readonly mapped: Record<Field, string[]>;

  constructor(
    map: FieldMap,
    private readonly forceCloudEvents: boolean,
  ) {
    this.order = lookupOrder(map);
    this.mapped = {} as Record<Field, string[]>;
    for (const f of FIELDS) this.mapped[f] = [...map].filter(([, t]) => t === f).map(([c]) => c);
  }

  isCloudEvent(obj: Record<string, unknown>): boolean {
    return this.forceCloudEvents || obj.specversion !== undefined;
  }

  event(obj: Record<string, unknown>): RawEvent {
    const e = {} as RawEvent;
    if (this.isCloudEvent(obj)) {
      const data = isObject(obj.data) ? obj.data : undefined;
      for (const f of FIELDS) e[f] = this.locateCe(obj, data, f)?.value;
    } else {
      for (const f of FIELDS) e[f] = valueOf(obj, this.order[f]);
    }
    return e;
  }

  fieldName(obj: Record<string, unknown>, field: Field): string {
    if (this.isCloudEvent(obj)) {
      return this.locateCe(obj, isObject(obj.data) ? obj.data : undefined, field)?.name ?? CE_ATTRIBUTE[field] ?? `data.${field}`;
    }
    return locate(obj, this.order[field])?.name ?? field;
  }

  /** Mapped names (in data, then the envelope), the context attribute, then data by alias. */
  private locateCe(obj: Record<string, unknown>, data: Record<string, unknown> | undefined, f: Field) {
    const mapped = this.mapped[f];
    if (mapped.length) {
      const hit = (data && locate(data, mapped, 'data.')) ?? locate(obj, mapped);
      if (hit) return hit;
    }
    const attr = CE_ATTRIBUTE[f];
    if (attr !== undefined && obj[attr] !== undefined && obj[attr] !== null) return { name: attr, value: obj[attr] };
    return data ? locate(data, this.order[f], 'data.') : undefined;
  }
}

// A key given as null counts only when no other name has a value: null then means "present
// but empty" (a quantity: null is rejected), undefined "absent" (the quantity defaults to 1).
function valueOf(obj: Record<string, unknown>, names: readonly string[]): unknown {
  return locate(obj, names)?.value;
}

function locate(obj: Record<string, unknown>, names: readonly string[], prefix = ''): { name: string; value: unknown } | undefined {
  let nulled: string | undefined;
  for (const n of names) {
    const v = obj[n];
    if (v !== undefined && v !== null) return { name: prefix + n, value: v };
    if (v === null) nulled ??= n;
  }
  return nulled === undefined ? undefined : { name: prefix + nulled, value: null };
}
