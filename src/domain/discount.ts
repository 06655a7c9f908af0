import type { Instant } from './period.js';

export type DiscountDuration = 'once' | 'repeating' | 'forever';
export const DISCOUNT_DURATIONS: DiscountDuration[] = ['once', 'repeating', 'forever'];

/** A tenant discount (DESIGN.md §13): a percentage or a fixed amount off each invoice it applies to. */
export interface Discount {
  id: string;
  tenantId: string;
  /** Creation order within the tenant. */
  seq: number;
  /** Exactly one of percent and amount is set (decimal strings). */
  percent: string | null;
  /** In the invoice's currency, rounded once to its minor unit when applied. */
  amount: string | null;
  duration: DiscountDuration;
  /** repeating: how many invoices; otherwise null. */
  periods: number | null;
  /** Limited to these features' lines; null: the whole subtotal. */
  features: string[] | null;
  /** It applies to invoices whose period ends after this instant. */
  startsAt: Instant;
  createdAt: Instant;
  removedAt: Instant | null;
  /** Non-void invoices that used it (counted for once / repeating). */
  uses: number;
}
