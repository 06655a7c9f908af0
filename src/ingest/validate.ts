import type { FeatureType } from '../domain/catalog.js';
import { EVENT_TIMES, parseInstant, toIso, type Instant } from '../domain/period.js';
import { Decimal } from '../domain/decimal.js';
import { MAX_QUANTITY, QUANTITY_SCALE, parseQuantity, type QuantityError } from '../domain/quantity.js';
import type { Field } from './fields.js';
import { idempotencyKey } from './idempotency.js';
import { JsonNumber, MAX_JSON_DEPTH, hasJsonNumber, nestsDeeper, scanJson, stringifyJson } from './json.js';

/** An event as read, before validation: one loosely typed value per field. */
export type RawEvent = Record<Field, unknown>;

/** What validation needs to know about the world, loaded once per run. */
export interface KnownIds {
  /** Tenant id -> created_at. */
  tenants: ReadonlyMap<string, Instant>;
  features: ReadonlyMap<string, FeatureType>;
  /** The weighted_sum features: their events are bounded by MAX_WEIGHTED_QUANTITY. */
  weighted?: ReadonlySet<string>;
}

/**
 * The largest event of a weighted_sum feature: its accumulator (micro-units × seconds, see
 * aggregate/value.ts) must fit a signed 64-bit integer, and 1e5 units held for a leap year is
 * 3.2e18. A window whose events together pass 2^63 fails its aggregate run loudly.
 */
export const MAX_WEIGHTED_QUANTITY = '100000';
const MAX_WEIGHTED_MICRO = BigInt(MAX_WEIGHTED_QUANTITY) * 10n ** BigInt(QUANTITY_SCALE);

export interface ValidateContext {
  known: KnownIds;
  /** Ingest time: the default occurred time and the reference for "in the future". */
  now: Instant;
  runId: number | null;
  /** How far before its tenant's creation an event may lie (default DEFAULT_BACKFILL_DAYS). */
  backfillDays?: number;
  /** Read a date-time without a zone ("2026-01-01T10:00:00") as UTC instead of rejecting it. */
  assumeUtc?: boolean;
  /** The option that sets assumeUtc, named in the reject of a zone-less time (CLI only). */
  assumeUtcOption?: string;
}

/** Events may be backdated this far before their tenant was created (BILLING_BACKFILL_DAYS). */
export const DEFAULT_BACKFILL_DAYS = 400;
const DAY_MS = 86_400_000;

/** Column order of an event row, as written by the batch writer. */
export const EVENT_COLUMNS = [
  'tenant_id',
  'idempotency_key',
  'feature_key',
  'quantity',
  'occurred_at',
  'ingested_at',
  'event_id',
  'source_service',
  'source_entity_id',
  'user_id',
  'metadata',
  'ingest_run_id',
] as const;

export type EventRow = [
  tenantId: string,
  idempotencyKey: string,
  featureKey: string,
  quantityMicro: string,
  occurredAt: number,
  ingestedAt: number,
  eventId: string | null,
  sourceService: string | null,
  sourceEntityId: string | null,
  userId: string | null,
  metadata: string | null,
  ingestRunId: number | null,
];

export interface Invalid {
  /** A canonical field, or "row" / "line" for a record that could not be read at all. */
  field: Field | 'row' | 'line';
  reason: string;
}

export const MAX_FUTURE_MS = 5 * 60 * 1000;
const MAX_TEXT = 255;

/** A value quoted for a message, cut short so one bad row cannot flood the output. */
export function show(v: unknown): string {
  const s = typeof v === 'string' ? v : v instanceof JsonNumber ? v.text : JSON.stringify(v) ?? String(v);
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 57)}...` : s);
}

const QUANTITY_REASON: Record<QuantityError, string> = {
  not_a_number: 'is not a number',
  negative: 'is negative',
  too_large: 'is more than 1e12',
  too_precise: 'has more than 6 decimals',
};

// The usual export format (toISOString()), parsed without parseInstant's general checks when
// the day (at most 28) and hour (not 24) cannot roll over into the next month or day.
const UTC_ISO = /^\d{4}-\d{2}-(?:[01]\d|2[0-8])T(?:[01]\d|2[0-3]):\d{2}:\d{2}(?:\.\d{1,3})?Z$/;

/** Why parseInstant refused a time. */
function timeProblem(t: unknown): string {
  if ((typeof t === 'number' && Number.isFinite(t)) || (typeof t === 'string' && /^-?\d+(\.\d+)?(e[+-]?\d+)?$/i.test(t.trim()))) {
    return 'is outside the range of dates';
  }
  if (typeof t === 'string' && /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2}))?$/i.test(t.trim())) {
    return 'is not a real date and time (no such day, hour, minute or offset)';
  }
  return 'is not an ISO 8601 time with offset or epoch seconds/milliseconds';
}

const isQuantityError = (m: string): m is QuantityError => m in QUANTITY_REASON;

/** Why a quantity was refused, with a hint for the usual spreadsheet habits. */
function quantityReason(q: unknown, error: QuantityError): string {
  const base = `${show(q)} ${QUANTITY_REASON[error]}`;
  if (error !== 'not_a_number' || typeof q !== 'string') return base;
  const comma = /^(\d+),(\d+)$/.exec(q);
  if (comma) {
    // Three digits after the comma may be digit grouping as well.
    return comma[2].length === 3
      ? `${base} (decimal comma or digit grouping? write ${comma[1]}.${comma[2]} or ${comma[1]}${comma[2]})`
      : `${base} (decimal comma? use ${comma[1]}.${comma[2]})`;
  }
  if (/^\+?\d+(\.\d+)?e[+-]?\d{1,3}$/i.test(q)) {
    const d = new Decimal(q);
    const plain = d.toFixed();
    return `${base} (exponent not accepted: write ${plain.length <= 30 ? plain : 'the number out in full'})`;
  }
  return base;
}

/** A date and time of day with no offset: ambiguous, so refused unless UTC is assumed. */
const ZONELESS = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/i;

// Plain decimals that need no Decimal arithmetic: the common case on the hot path.
const SIMPLE_QUANTITY = /^(\d{1,12})(?:\.(\d{1,6}))?$/;
const MICRO_PAD = ['000000', '00000', '0000', '000', '00', '0', ''];

function stripLeadingZeros(s: string): string {
  let i = 0;
  while (i < s.length - 1 && s.charCodeAt(i) === 48) i++;
  return i === 0 ? s : s.slice(i);
}

/** Quantity as integer micro-units, or why not. */
export function quantityMicro(raw: unknown): string | QuantityError {
  if (raw instanceof JsonNumber) return exactQuantityMicro(raw.text);
  if (typeof raw === 'number' && Number.isInteger(raw) && raw >= 0 && raw <= 1e12) {
    return raw === 0 ? '0' : `${raw}000000`;
  }
  if (typeof raw === 'string') {
    const m = SIMPLE_QUANTITY.exec(raw);
    if (m) {
      const frac = m[2] ?? '';
      return stripLeadingZeros(m[1] + frac + MICRO_PAD[frac.length]);
    }
  }
  const q = parseQuantity(raw);
  return q.ok ? q.micro : q.error;
}

/** A JSON number's text (exponents allowed), exactly; its size is checked before it is expanded. */
function exactQuantityMicro(text: string): string | QuantityError {
  let d: Decimal;
  try {
    d = new Decimal(text);
  } catch {
    return 'not_a_number';
  }
  if (!d.isFinite()) return 'not_a_number';
  if (d.isNegative() && !d.isZero()) return 'negative';
  if (d.gt(MAX_QUANTITY)) return 'too_large';
  if (d.decimalPlaces() > QUANTITY_SCALE) return 'too_precise';
  const q = parseQuantity(d.toFixed());
  return q.ok ? q.micro : q.error;
}

/** Text field: trimmed string or null when absent/empty; an Invalid when not text or too long. */
function text(v: unknown, field: Field): string | null | Invalid {
  if (v === undefined || v === null) return null;
  let s: string;
  if (typeof v === 'string') s = v.trim();
  else if (typeof v === 'number' || typeof v === 'bigint' || v instanceof JsonNumber) s = String(v);
  else return { field, reason: `${show(v)} is not text` };
  if (s === '') return null;
  if (s.length > MAX_TEXT) return { field, reason: `is longer than ${MAX_TEXT} characters` };
  if (s.includes('\0')) return { field, reason: NUL_REASON };
  return s;
}

// PostgreSQL text and jsonb cannot hold U+0000 (SQLite can): refused alike on both.
const NUL_REASON = 'contains a NUL character (U+0000), which cannot be stored';

function hasNul(v: unknown): boolean {
  if (typeof v === 'string') return v.includes('\0');
  if (typeof v !== 'object' || v === null) return false;
  return Object.entries(v).some(([k, x]) => k.includes('\0') || hasNul(x));
}

const isInvalid = (v: unknown): v is Invalid => typeof v === 'object' && v !== null;

const DEPTH_REASON = `nests deeper than ${MAX_JSON_DEPTH} levels`;

function metadataText(v: unknown): string | null | Invalid {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') {
    const s = v.trim();
    if (s === '') return null;
    if (scanJson(s).depth > MAX_JSON_DEPTH) return { field: 'metadata', reason: DEPTH_REASON };
    let parsed: unknown;
    try {
      parsed = JSON.parse(s);
    } catch {
      return { field: 'metadata', reason: `${show(s)} is not valid JSON` };
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      return { field: 'metadata', reason: `${show(s)} is not a JSON object` };
    }
    if (hasNul(parsed)) return { field: 'metadata', reason: NUL_REASON };
    return s; // stored as given: already valid JSON, no need to re-serialize
  }
  if (typeof v === 'object' && nestsDeeper(v)) return { field: 'metadata', reason: DEPTH_REASON };
  if (typeof v === 'object' && !Array.isArray(v) && !(v instanceof JsonNumber)) {
    if (hasNul(v)) return { field: 'metadata', reason: NUL_REASON };
    return hasJsonNumber(v) ? stringifyJson(v) : JSON.stringify(v);
  }
  return { field: 'metadata', reason: `${show(v)} is not a JSON object` };
}

/**
 * Validate one event and build its row, or say what is wrong with it (the first problem,
 * in field order). Same rules for file ingest, `billing record` and the HTTP API.
 */
export function validateEvent(e: RawEvent, ctx: ValidateContext): EventRow | Invalid {
  const tenantId = text(e.tenant_id, 'tenant_id');
  if (isInvalid(tenantId)) return tenantId;
  if (tenantId === null) return { field: 'tenant_id', reason: 'is missing' };
  const createdAt = ctx.known.tenants.get(tenantId);
  if (createdAt === undefined) return { field: 'tenant_id', reason: `${show(tenantId)} is not a known tenant` };

  const featureKey = text(e.feature, 'feature');
  if (isInvalid(featureKey)) return featureKey;
  if (featureKey === null) return { field: 'feature', reason: 'is missing' };
  const type = ctx.known.features.get(featureKey);
  if (type === undefined) return { field: 'feature', reason: `${show(featureKey)} is not a known feature` };
  if (type === 'boolean') return { field: 'feature', reason: `${show(featureKey)} is a boolean feature and takes no usage` };

  // No quantity field at all counts 1; a field that is there but empty is a mistake.
  let micro = '1000000';
  const q = typeof e.quantity === 'string' ? e.quantity.trim() : e.quantity;
  if (q === null || q === '') return { field: 'quantity', reason: 'is empty (leave the field out for the default 1)' };
  if (q !== undefined) {
    const m = quantityMicro(q);
    if (isQuantityError(m)) return { field: 'quantity', reason: quantityReason(q, m) };
    micro = m;
    if (ctx.known.weighted?.has(featureKey) && BigInt(micro) > MAX_WEIGHTED_MICRO) {
      return { field: 'quantity', reason: `${show(q)} is more than ${MAX_WEIGHTED_QUANTITY}, the largest step of a weighted_sum feature's level` };
    }
  }

  let occurredAt: number | null = null;
  const t = typeof e.occurred_at === 'string' ? e.occurred_at.trim() : e.occurred_at;
  if (t !== undefined && t !== null && t !== '') {
    const zoneless = typeof t === 'string' && ZONELESS.test(t);
    if (zoneless && !ctx.assumeUtc) {
      const how = ctx.assumeUtcOption ? `, or pass ${ctx.assumeUtcOption} to read zone-less times as UTC` : '';
      return { field: 'occurred_at', reason: `${show(t)} has no time zone: add Z or an offset such as +02:00${how}` };
    }
    const zoned = zoneless ? `${t as string}Z` : t;
    occurredAt =
      typeof zoned === 'string' && UTC_ISO.test(zoned) ? Date.parse(zoned) : parseInstant(zoned instanceof JsonNumber ? Number(zoned.text) : zoned);
    if (Number.isNaN(occurredAt)) occurredAt = null; // e.g. month 13
    if (occurredAt === null) return { field: 'occurred_at', reason: `${show(t)} ${timeProblem(zoned instanceof JsonNumber ? zoned.text : zoned)}` };
    if (occurredAt > ctx.now + MAX_FUTURE_MS) {
      return { field: 'occurred_at', reason: `${show(t)} is more than 5 minutes in the future` };
    }
    if (occurredAt < EVENT_TIMES.start || occurredAt >= EVENT_TIMES.end) {
      return { field: 'occurred_at', reason: `${show(t)} is outside 1970-01-01..9999-12-31` };
    }
    const days = ctx.backfillDays ?? DEFAULT_BACKFILL_DAYS;
    if (occurredAt < createdAt - days * DAY_MS) {
      return {
        field: 'occurred_at',
        reason: `${show(t)} is before ${toIso(createdAt - days * DAY_MS)}, ${days} days before the tenant was created (BILLING_BACKFILL_DAYS)`,
      };
    }
  }

  const eventId = text(e.event_id, 'event_id');
  if (isInvalid(eventId)) return eventId;
  const sourceService = text(e.source_service, 'source_service');
  if (isInvalid(sourceService)) return sourceService;
  const sourceEntityId = text(e.source_entity_id, 'source_entity_id');
  if (isInvalid(sourceEntityId)) return sourceEntityId;
  const userId = text(e.user_id, 'user_id');
  if (isInvalid(userId)) return userId;
  const metadata = metadataText(e.metadata);
  if (isInvalid(metadata)) return metadata;

  const key = idempotencyKey({ featureKey, micro, occurredAt, ingestedAt: ctx.now, eventId, sourceService, sourceEntityId, userId, metadata });
  return [
    tenantId,
    key,
    featureKey,
    micro,
    occurredAt ?? ctx.now,
    ctx.now,
    eventId,
    sourceService,
    sourceEntityId,
    userId,
    metadata,
    ctx.runId,
  ];
}
