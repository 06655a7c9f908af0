import type { Decimal } from '../../domain/decimal.js';
import { decStr } from '../../domain/decimal.js';
import { priceLine, type PriceLine } from '../price-line.js';

/** per_unit: billable × unitPrice, one line "unit". */
export function pricePerUnit(p: { unitPrice: string }, billable: Decimal): PriceLine[] {
  if (billable.lte(0)) return [];
  return [priceLine('unit', `${decStr(billable)} units × ${p.unitPrice}`, billable, p.unitPrice, null)];
}
