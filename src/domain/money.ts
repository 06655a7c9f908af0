import { Decimal, dec, decStr, type DecimalInput } from './decimal.js';

/**
 * ISO 4217 active codes and their minor-unit digits (codes whose minor unit is "N.A.", such
 * as precious metals and XDR, are not billable and left out). Written out here because
 * Intl/CLDR answers with display digits (HUF, IDR, COP, PKR 0), not the standard's.
 */
// prettier-ignore
const ISO_4217_DIGITS: Readonly<Record<string, number>> = Object.freeze({
  AED: 2, AFN: 2, ALL: 2, AMD: 2, ANG: 2, AOA: 2, ARS: 2, AUD: 2, AWG: 2, AZN: 2,
  BAM: 2, BBD: 2, BDT: 2, BGN: 2, BHD: 3, BIF: 0, BMD: 2, BND: 2, BOB: 2, BOV: 2,
  BRL: 2, BSD: 2, BTN: 2, BWP: 2, BYN: 2, BZD: 2,
  CAD: 2, CDF: 2, CHE: 2, CHF: 2, CHW: 2, CLF: 4, CLP: 0, CNY: 2, COP: 2, COU: 2,
  CRC: 2, CUC: 2, CUP: 2, CVE: 2, CZK: 2,
  DJF: 0, DKK: 2, DOP: 2, DZD: 2,
  EGP: 2, ERN: 2, ETB: 2, EUR: 2,
  FJD: 2, FKP: 2,
  GBP: 2, GEL: 2, GHS: 2, GIP: 2, GMD: 2, GNF: 0, GTQ: 2, GYD: 2,
  HKD: 2, HNL: 2, HTG: 2, HUF: 2,
  IDR: 2, ILS: 2, INR: 2, IQD: 3, IRR: 2, ISK: 0,
  JMD: 2, JOD: 3, JPY: 0,
  KES: 2, KGS: 2, KHR: 2, KMF: 0, KPW: 2, KRW: 0, KWD: 3, KYD: 2, KZT: 2,
  LAK: 2, LBP: 2, LKR: 2, LRD: 2, LSL: 2, LYD: 3,
  MAD: 2, MDL: 2, MGA: 2, MKD: 2, MMK: 2, MNT: 2, MOP: 2, MRU: 2, MUR: 2, MVR: 2,
  MWK: 2, MXN: 2, MXV: 2, MYR: 2, MZN: 2,
  NAD: 2, NGN: 2, NIO: 2, NOK: 2, NPR: 2, NZD: 2,
  OMR: 3,
  PAB: 2, PEN: 2, PGK: 2, PHP: 2, PKR: 2, PLN: 2, PYG: 0,
  QAR: 2,
  RON: 2, RSD: 2, RUB: 2, RWF: 0,
  SAR: 2, SBD: 2, SCR: 2, SDG: 2, SEK: 2, SGD: 2, SHP: 2, SLE: 2, SLL: 2, SOS: 2,
  SRD: 2, SSP: 2, STN: 2, SVC: 2, SYP: 2, SZL: 2,
  THB: 2, TJS: 2, TMT: 2, TND: 3, TOP: 2, TRY: 2, TTD: 2, TWD: 2, TZS: 2,
  UAH: 2, UGX: 0, USD: 2, USN: 2, UYI: 0, UYU: 2, UYW: 4, UZS: 2,
  VED: 2, VES: 2, VND: 0, VUV: 0,
  WST: 2,
  XAF: 0, XCD: 2, XCG: 2, XOF: 0, XPF: 0,
  YER: 2,
  ZAR: 2, ZMW: 2, ZWG: 2, ZWL: 2,
});

/**
 * ISO 4217 "no currency": only the zero charges of unrated usage carry it (src/rate), shown
 * with two digits. Never accepted as a plan or tenant currency.
 */
export const NO_CURRENCY = 'XXX';

/** Number of ISO 4217 minor-unit digits of a currency (USD 2, JPY 0, KWD 3); unknown codes throw. */
export function currencyDigits(currency: string): number {
  const code = currency.toUpperCase();
  const digits = code === NO_CURRENCY ? 2 : ISO_4217_DIGITS[code];
  if (digits === undefined) throw new RangeError(`"${currency}" is not an ISO 4217 currency code`);
  return digits;
}

export function isKnownCurrency(currency: string): boolean {
  return Object.hasOwn(ISO_4217_DIGITS, currency.toUpperCase());
}

export interface RoundedAmount {
  /** The exact decimal before rounding, major units. */
  precise: string;
  /** Rounded to the currency's minor unit, major units ("1.25"). */
  amount: string;
  /** Rounded amount as an integer count of minor units ("125"). */
  minor: string;
}

/** Round once, half away from zero, to the currency's minor unit. */
export function roundMoney(value: DecimalInput, currency: string): RoundedAmount {
  const d = dec(value);
  const digits = currencyDigits(currency);
  const rounded = d.toDecimalPlaces(digits, Decimal.ROUND_HALF_UP);
  return {
    precise: decStr(d),
    amount: rounded.toFixed(digits),
    minor: decStr(rounded.times(new Decimal(10).pow(digits))),
  };
}

/** Format a major-unit amount with exactly the currency's digits ("1.5" USD -> "1.50"). */
export function formatMoney(value: DecimalInput, currency: string): string {
  return dec(value).toFixed(currencyDigits(currency));
}

/**
 * Currencies whose payments are collected only in multiples of 10 minor units (Stripe's rule
 * for the three-decimal currencies): invoices in them get a `rounding` line.
 */
const CASH_STEP_10 = new Set(['BHD', 'JOD', 'KWD', 'OMR', 'TND']);

/** The collectible step in minor units: 10 for BHD JOD KWD OMR TND, else 1. */
export function cashStepMinor(currency: string): number {
  return CASH_STEP_10.has(currency.toUpperCase()) ? 10 : 1;
}

/**
 * The cash-rounding adjustment in minor units for a total in minor units:
 * round_half_away_from_zero(total / step) × step − total ("0" when already collectible).
 */
export function cashRoundingMinor(totalMinor: string | bigint, currency: string): string {
  const step = cashStepMinor(currency);
  const total = dec(typeof totalMinor === 'bigint' ? totalMinor.toString() : totalMinor);
  if (step === 1) return '0';
  const rounded = total.div(step).toDecimalPlaces(0, Decimal.ROUND_HALF_UP).times(step);
  return decStr(rounded.minus(total));
}

/** Minor units (integer string) -> major-unit decimal string with the currency's digits. */
export function minorToMajor(minor: DecimalInput, currency: string): string {
  const digits = currencyDigits(currency);
  return dec(minor).div(new Decimal(10).pow(digits)).toFixed(digits);
}
