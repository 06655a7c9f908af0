import { ZERO, dec, decStr, type Decimal } from '../domain/decimal.js';

/**
 * One detailed line of a priced feature. Invariant for every line:
 * amount = quantity × (unitPrice ?? 0) + (flatPrice ?? 0), all precise decimals.
 */
export interface PriceLine {
  /** Stable reference: 'unit' | 'package' | 'tier-1'.. | 'minimum' | 'maximum'. */
  ref: string;
  description: string;
  quantity: string;
  unitPrice: string | null;
  flatPrice: string | null;
  amount: string;
}

export function priceLine(
  ref: string,
  description: string,
  quantity: Decimal,
  unitPrice: string | null,
  flatPrice: string | null,
): PriceLine {
  const amount = quantity.times(unitPrice === null ? ZERO : dec(unitPrice)).plus(flatPrice === null ? ZERO : dec(flatPrice));
  return {
    ref,
    description,
    quantity: decStr(quantity),
    unitPrice: unitPrice === null ? null : decStr(dec(unitPrice)),
    flatPrice: flatPrice === null ? null : decStr(dec(flatPrice)),
    amount: decStr(amount),
  };
}

export function sumLines(lines: PriceLine[]): Decimal {
  return lines.reduce((s, l) => s.plus(dec(l.amount)), ZERO);
}
