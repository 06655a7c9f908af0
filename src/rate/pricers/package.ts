import { dec, decStr, type Decimal } from '../../domain/decimal.js';
import { priceLine, type PriceLine } from '../price-line.js';

/** package: ceil(billable / size) packages × packagePrice; the line's quantity counts packages. */
export function pricePackage(p: { size: string; packagePrice: string }, billable: Decimal): PriceLine[] {
  if (billable.lte(0)) return [];
  const size = dec(p.size);
  const packages = billable.div(size).ceil();
  const what = `${decStr(packages)} × package of ${decStr(size)} (${decStr(billable)} units)`;
  return [priceLine('package', what, packages, p.packagePrice, null)];
}
