import { createHash } from 'node:crypto';

/** usage_events.idempotency_key is a varchar(255) on PostgreSQL. */
const MAX_KEY = 255;

export interface KeyParts {
  featureKey: string;
  micro: string;
  /** The instant as given in the input; null when it defaulted to ingest time. */
  occurredAt: number | null;
  /** Ingest time: only its UTC date counts, and only when occurredAt is null. */
  ingestedAt: number;
  eventId: string | null;
  sourceService: string | null;
  sourceEntityId: string | null;
  userId: string | null;
  metadata: string | null;
}

const sha = (s: string) => createHash('sha256').update(s).digest('base64url');

// Readable when it fits, hashed when it does not: either way a pure function of the input.
function fit(prefix: string, body: string): string {
  return prefix.length + 1 + body.length <= MAX_KEY ? `${prefix}:${body}` : `${prefix}#${sha(body)}`;
}

const SEP = /[%:]/g;
const escapePart = (s: string) => (s.includes('%') || s.includes(':') ? s.replace(SEP, (c) => (c === '%' ? '%25' : '%3A')) : s);

/**
 * The per-tenant idempotency key (DESIGN.md §4): the event id if given; else source service
 * + source entity + feature; else a hash of the event's content. A row without a time counts
 * the UTC date of ingest instead: a same-day rerun matches, the same row on a later day is new
 * usage (otherwise a repeating id-less row would be a duplicate forever).
 */
export function idempotencyKey(p: KeyParts): string {
  if (p.eventId !== null) return fit('e', p.eventId);
  if (p.sourceService !== null && p.sourceEntityId !== null) {
    return fit('s', `${escapePart(p.sourceService)}:${escapePart(p.sourceEntityId)}:${p.featureKey}`);
  }
  const content = [
    p.featureKey,
    p.micro,
    p.occurredAt === null ? `d:${new Date(p.ingestedAt).toISOString().slice(0, 10)}` : String(p.occurredAt),
    p.sourceService ?? '',
    p.sourceEntityId ?? '',
    p.userId ?? '',
    p.metadata ?? '',
  ].join('\u0000');
  return `h:${sha(content)}`;
}
