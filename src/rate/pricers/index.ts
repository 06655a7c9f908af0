import { dec, isDecimalString, type Decimal } from '../../domain/decimal.js';
import { BillingError } from '../../domain/errors.js';
import type { PercentTier, Pricing, Tier } from '../../domain/catalog.js';
import type { PriceLine } from '../price-line.js';
import { pricePerUnit } from './per-unit.js';
import { pricePackage } from './package.js';
import { priceGraduated } from './graduated.js';
import { priceVolume } from './volume.js';
import { priceGraduatedPercentage } from './graduated-percentage.js';
import { pricePercentage } from './percentage.js';

/**
 * The one place a pricing model picks its pricer. Lines exclude minimum/maximum (see rate.ts).
 * `events`: the window's event amounts in time order, which only percentage prices by.
 */
export function priceModel(pricing: Pricing, billable: Decimal, events?: readonly Decimal[]): PriceLine[] {
  switch (pricing.model) {
    case 'per_unit':
      assertPrice(pricing.unitPrice, 'unitPrice');
      return pricePerUnit(pricing, billable);
    case 'package':
      assertPrice(pricing.packagePrice, 'packagePrice');
      if (!isDecimalString(String(pricing.size)) || dec(pricing.size).lte(0)) {
        throw invalid(`package size "${pricing.size}" must be a positive number`);
      }
      return pricePackage(pricing, billable);
    case 'graduated':
      assertTiers(pricing.tiers);
      return priceGraduated(pricing, billable);
    case 'volume':
      assertTiers(pricing.tiers);
      return priceVolume(pricing, billable);
    case 'graduated_percentage':
      assertTiers(pricing.tiers);
      return priceGraduatedPercentage(pricing, billable);
    case 'percentage':
      assertPrice(pricing.rate, 'rate');
      if (events === undefined) {
        if (billable.gt(0)) throw new BillingError('internal', 'percentage pricing needs the window\'s event amounts');
        return [];
      }
      return pricePercentage(pricing, events);
    default:
      throw invalid(`unknown pricing model "${(pricing as { model: unknown }).model}"`);
  }
}

function invalid(message: string): BillingError {
  return new BillingError('catalog_invalid', `${message}; fix the catalog and apply it again`);
}

function assertPrice(v: unknown, name: string): void {
  if (typeof v !== 'string' || !isDecimalString(v)) throw invalid(`${name} "${String(v)}" is not a decimal string`);
}

// The catalog validates tiers; this guards against rows that would price silently wrong.
function assertTiers(tiers: Array<Tier | PercentTier>): void {
  if (!Array.isArray(tiers) || tiers.length === 0) throw invalid('tiered pricing needs at least one tier');
  let prev: Decimal | null = null;
  tiers.forEach((t, i) => {
    if ('rate' in t) assertPrice(t.rate, `tier ${i + 1} rate`);
    else assertPrice(t.unitPrice, `tier ${i + 1} unitPrice`);
    if (t.flatPrice !== null && t.flatPrice !== undefined) assertPrice(t.flatPrice, `tier ${i + 1} flatPrice`);
    const last = i === tiers.length - 1;
    if (last !== (t.upTo === null || t.upTo === undefined)) throw invalid('only the last tier has upTo null');
    if (!last) {
      const up = dec(String(t.upTo));
      if (up.lte(prev ?? 0)) throw invalid(`tier ${i + 1} upTo must be above the previous bound`);
      prev = up;
    }
  });
}
