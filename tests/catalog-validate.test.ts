import { describe, expect, it } from 'vitest';
import { parseCatalogText } from '../src/catalog/load.js';
import { validateCatalog } from '../src/catalog/validate.js';
import type { Feature } from '../src/domain/catalog.js';
import { BillingError } from '../src/domain/errors.js';

// The catalog checker's exact problem lines (path: message, in order), one row per rule it
// enforces; operators and scripts read these lines, so a rewording is a deliberate change here.

const NONE = new Map<string, Feature>();
const STORED = new Map(
  ['OCR_SCAN', 'API_CALL', 'SEATS', 'STORAGE_GB', 'REPORTS', 'VOICE'].map((key) => [key, { key, type: key === 'VOICE' ? 'boolean' : 'metered' } as Feature]),
);

function problemsOf(input: unknown, known: Map<string, Feature>): string[] {
  try {
    validateCatalog(input, known);
  } catch (e) {
    expect(e).toBeInstanceOf(BillingError);
    const problems = (e as BillingError).details as Array<{ path: string; message: string }>;
    const n = problems.length;
    expect((e as BillingError).message).toBe(
      `catalog has ${n} problem${n === 1 ? '' : 's'}; nothing was applied (first: ${problems[0].path}: ${problems[0].message})`,
    );
    return problems.map((p) => `${p.path}: ${p.message}`);
  }
  throw new Error('expected the catalog to be rejected');
}

const CASES: Array<[string, unknown, Map<string, Feature>, string[]]> = [
  [
    'unknown fields are listed before the other problems of their object, with the allowed fields',
    { plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', colour: 'red', features: { OCR_SCAN: { enabled: 'yes', included: 1, extra: 1, overage: { model: 'per_unit', unitPrice: 1, per: 'x' } } } }], cost: 1 },
    STORED,
    [
      '$.cost: unknown field (expected one of: features, plans, taxes, coupons)',
      'plans[0].colour: unknown field (expected one of: key, name, currency, price, interval, trialDays, minimumCommitment, spendThreshold, features)',
      'plans[0].features.OCR_SCAN.extra: unknown field (expected one of: enabled, included, hardStop, limit, overage, rollover, resetEvery, dimension, prices)',
      'plans[0].features.OCR_SCAN.enabled: must be true or false',
      'plans[0].features.OCR_SCAN.overage.per: unknown field (expected one of: model, minimum, maximum, unitPrice)',
      'plans[0].features.OCR_SCAN.overage.unitPrice: must be a decimal string like "1" (prices are strings so no float ever touches money)',
    ],
  ],
  [
    'a tier: unknown field, bound and price problems in field order',
    { plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', features: { OCR_SCAN: { included: 1, overage: { model: 'graduated', tiers: [{ upTo: -5, unitPrice: 0.5, flatPrice: 'x', max: 1 }, { upTo: null, unitPrice: '1' }] } } } }] },
    STORED,
    [
      'plans[0].features.OCR_SCAN.overage.tiers[0].max: unknown field (expected one of: upTo, unitPrice, flatPrice)',
      'plans[0].features.OCR_SCAN.overage.tiers[0].upTo: must not be negative',
      'plans[0].features.OCR_SCAN.overage.tiers[0].unitPrice: must be a decimal string like "0.5" (prices are strings so no float ever touches money)',
      'plans[0].features.OCR_SCAN.overage.tiers[0].flatPrice: "x" is not a decimal string with at most 12 decimals, like "0.05"',
    ],
  ],
  [
    'graduated_percentage tiers: a rate in percent (0 to 100, a decimal string), no unitPrice',
    { plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', features: { OCR_SCAN: { included: 0, overage: { model: 'graduated_percentage', tiers: [{ upTo: 1000, rate: '101', unitPrice: '1' }, { upTo: null, rate: 2.5 }] } } } }] },
    STORED,
    [
      'plans[0].features.OCR_SCAN.overage.tiers[0].unitPrice: unknown field (expected one of: upTo, rate, flatPrice)',
      'plans[0].features.OCR_SCAN.overage.tiers[0].rate: "101" must be a percentage from "0" to "100" as a decimal string, like "2.9"',
      'plans[0].features.OCR_SCAN.overage.tiers[1].rate: "2.5" must be a percentage from "0" to "100" as a decimal string, like "2.9"',
    ],
  ],
  [
    'null tiers, empty tiers and a tier that is not an object',
    { plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', features: { OCR_SCAN: { included: 1, overage: { model: 'volume', tiers: null } }, API_CALL: { included: 1, overage: { model: 'graduated', tiers: [] } }, SEATS: { included: 1, overage: { model: 'graduated', tiers: [null, 'x', { unitPrice: '1' }] } } } }] },
    STORED,
    [
      'plans[0].features.OCR_SCAN.overage.tiers: must be a non-empty array of {upTo, unitPrice, flatPrice?}',
      'plans[0].features.API_CALL.overage.tiers: must be a non-empty array of {upTo, unitPrice, flatPrice?}',
      'plans[0].features.SEATS.overage.tiers[0]: must be an object',
      'plans[0].features.SEATS.overage.tiers[1]: must be an object',
    ],
  ],
  [
    'open-ended tiers: only the last may be, the last must be, and an absent upTo is open-ended',
    { plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', features: { OCR_SCAN: { included: 1, overage: { model: 'graduated', tiers: [{ unitPrice: '1' }, { upTo: null, unitPrice: '1' }, { upTo: 10, unitPrice: '1' }] } }, API_CALL: { included: 1, overage: { model: 'volume', tiers: [{ upTo: 10, unitPrice: '1' }, { unitPrice: '0.5' }] } } } }] },
    STORED,
    [
      'plans[0].features.OCR_SCAN.overage.tiers[0].upTo: only the last tier may be open-ended (upTo: null)',
      'plans[0].features.OCR_SCAN.overage.tiers[1].upTo: only the last tier may be open-ended (upTo: null)',
      'plans[0].features.OCR_SCAN.overage.tiers[2].upTo: the last tier must have upTo: null (it prices everything above the previous bound)',
    ],
  ],
  [
    'tier bounds rise from the previous bound that was a quantity, even an out-of-order one',
    { plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', features: { OCR_SCAN: { included: 1, overage: { model: 'graduated', tiers: [{ upTo: 100, unitPrice: '1' }, { upTo: 50, unitPrice: '1' }, { upTo: 'many', unitPrice: '1' }, { upTo: '70', unitPrice: '1' }, { upTo: 0, unitPrice: '1' }, { upTo: 70, unitPrice: '1' }, { upTo: null, unitPrice: '1' }] } } } }] },
    STORED,
    [
      'plans[0].features.OCR_SCAN.overage.tiers[1].upTo: must be greater than 100',
      'plans[0].features.OCR_SCAN.overage.tiers[2].upTo: must be a number or a decimal string',
      'plans[0].features.OCR_SCAN.overage.tiers[4].upTo: must be greater than 0',
    ],
  ],
  [
    'metered terms: included required unless listed as off, unlimited with overage or a hard stop, limit below included',
    { plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', features: { OCR_SCAN: { hardStop: true }, API_CALL: { enabled: false, limit: 5 }, SEATS: { included: null, hardStop: true, overage: { model: 'per_unit', unitPrice: '1' } }, STORAGE_GB: { included: '10', limit: 9.5, hardStop: 'no' } } }] },
    STORED,
    [
      'plans[0].features.OCR_SCAN.included: is required for a metered feature (a number, a decimal string, or null for unlimited)',
      'plans[0].features.SEATS.hardStop: needs a limit: included is unlimited (null) and no limit is given',
      'plans[0].features.SEATS.overage: has no effect when included is null (unlimited); remove it or set included',
      'plans[0].features.STORAGE_GB.hardStop: must be true or false',
      'plans[0].features.STORAGE_GB.limit: must be at least included (10)',
    ],
  ],
  [
    'boolean terms: metered terms refused before a bad enabled',
    { plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', features: { VOICE: { limit: 1, enabled: 1, included: null, junk: 0 } } }] },
    STORED,
    [
      'plans[0].features.VOICE.junk: unknown field (expected one of: enabled, included, hardStop, limit, overage, rollover, resetEvery, dimension, prices)',
      'plans[0].features.VOICE.included: VOICE is a boolean feature: it takes only "enabled"',
      'plans[0].features.VOICE.limit: VOICE is a boolean feature: it takes only "enabled"',
      'plans[0].features.VOICE.enabled: must be true or false',
    ],
  ],
  [
    'quantities: numbers or decimal strings, canonical, at most 6 decimals and 1e12',
    { plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', features: { OCR_SCAN: { included: 1e-7 }, API_CALL: { included: '1e3' }, SEATS: { included: 1e13 }, STORAGE_GB: { included: '-0.5' }, REPORTS: { included: true } } }] },
    STORED,
    [
      'plans[0].features.OCR_SCAN.included: must have at most 6 decimals',
      'plans[0].features.API_CALL.included: must be a number or a decimal string',
      'plans[0].features.SEATS.included: must be at most 1e12',
      'plans[0].features.STORAGE_GB.included: must not be negative',
      'plans[0].features.REPORTS.included: must be a number or a decimal string',
    ],
  ],
  [
    'prices are decimal strings: numbers, negatives, too many decimals, min above max',
    { plans: [{ key: 'p', currency: 'USD', price: 29, interval: 'month', features: { OCR_SCAN: { included: 1, overage: { model: 'per_unit', unitPrice: ' -1 ', minimum: '5', maximum: '2' } }, API_CALL: { included: 1, overage: { model: 'package', packagePrice: '0.1234567890123', minimum: 3 } }, SEATS: { included: 1, overage: { model: 'package', size: 0, packagePrice: null } } } }] },
    STORED,
    [
      'plans[0].price: must be a decimal string like "29" (prices are strings so no float ever touches money)',
      'plans[0].features.OCR_SCAN.overage.unitPrice: must not be negative',
      'plans[0].features.OCR_SCAN.overage.maximum: must be at least the minimum (5)',
      'plans[0].features.API_CALL.overage.size: is required',
      'plans[0].features.API_CALL.overage.packagePrice: "0.1234567890123" is not a decimal string with at most 12 decimals, like "0.05"',
      'plans[0].features.API_CALL.overage.minimum: must be a decimal string like "3" (prices are strings so no float ever touches money)',
      'plans[0].features.SEATS.overage.size: must be greater than 0',
      'plans[0].features.SEATS.overage.packagePrice: must be a decimal string like "0.05"',
    ],
  ],
  [
    'pricing: not an object, no model, an unknown model (its other fields are not looked at)',
    { plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', features: { OCR_SCAN: { included: 1, overage: [] }, API_CALL: { included: 1, overage: { unitPrice: '1' } }, SEATS: { included: 1, overage: { model: 'flat', price: 1 } } } }] },
    STORED,
    [
      'plans[0].features.OCR_SCAN.overage: must be an object with a "model"',
      'plans[0].features.API_CALL.overage.model: must be one of per_unit, package, graduated, volume, graduated_percentage, percentage',
      'plans[0].features.SEATS.overage.model: must be one of per_unit, package, graduated, volume, graduated_percentage, percentage',
    ],
  ],
  [
    'plan fields: required, wrong type, currency quoted as written, lengths counted before trimming',
    { plans: [{ key: ' p ', name: null, currency: ' xy ', interval: 'week', trialDays: 1.5, features: [] }, { key: 'Q_1', name: 'x'.repeat(199) + '  ', currency: ' xy', price: '1', features: null }, {}] },
    NONE,
    [
      'plans[0].name: must be a non-empty string',
      'plans[0].currency: must be at most 3 characters',
      'plans[0].price: is required (base fee per interval, e.g. "29.00")',
      'plans[0].interval: must be "month" or "year"',
      'plans[0].trialDays: must be a whole number of days from 0 to 3650',
      'plans[0].features: must be an object mapping feature keys to terms',
      'plans[1].key: "Q_1" must be lower-kebab (a-z, 0-9, single dashes)',
      'plans[1].name: must be at most 200 characters',
      'plans[1].currency: " xy" is not an ISO 4217 currency code',
      'plans[1].interval: is required ("month" or "year")',
      'plans[1].features: must be an object mapping feature keys to terms',
      'plans[2].key: is required',
      'plans[2].currency: is required',
      'plans[2].price: is required (base fee per interval, e.g. "29.00")',
      'plans[2].interval: is required ("month" or "year")',
      'plans[2].features: is required: a map of feature key to terms (a feature absent from a plan is not available on it)',
    ],
  ],
  [
    'feature fields: boolean takes no metered fields, unique needs uniqueBy, uniqueBy only for unique',
    { features: [{ key: 'B', type: 'boolean', unit: null, stripeMeter: 'm', aggregation: 'sum', uniqueBy: 'u' }, { key: 'U', aggregation: 'unique' }, { key: 'C', aggregation: 'min', uniqueBy: 'u' }, { key: 'D', type: 'flag', aggregation: 'median', name: '' }, { key: ' lower ', unit: 5 }] },
    NONE,
    [
      'features[0].aggregation: a boolean feature is on or off per plan: it takes no aggregation',
      'features[0].uniqueBy: a boolean feature is on or off per plan: it takes no uniqueBy',
      'features[0].stripeMeter: a boolean feature is on or off per plan: it takes no stripeMeter',
      'features[0].unit: a boolean feature is on or off per plan: it takes no unit',
      'features[1].uniqueBy: is required when aggregation is "unique" (e.g. "user_id")',
      'features[2].uniqueBy: only applies to aggregation "unique"',
      'features[3].type: must be "metered" or "boolean"',
      'features[3].name: must be a non-empty string',
      'features[3].aggregation: must be one of sum, count, max, min, last, unique, avg, weighted_sum',
      'features[4].key: "lower" must be UPPER_SNAKE (A-Z, 0-9, _; starting with a letter)',
      'features[4].unit: must be a non-empty string',
    ],
  ],
  [
    'stored features keep their type; a feature with other problems can still be used by plans',
    { features: [{ key: 'VOICE', unit: 123 }, { key: 'NEWB', type: 'boolean', unit: 'x' }], plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', features: { VOICE: { included: 1 }, NEWB: { enabled: true } } }] },
    STORED,
    [
      'features[0].unit: must be a non-empty string',
      'features[0].type: VOICE is already a boolean feature; its type cannot change (plans and events depend on it; use a new key)',
      'features[1].unit: a boolean feature is on or off per plan: it takes no unit',
    ],
  ],
  [
    'duplicates: feature keys compared trimmed, plan keys as written',
    { features: [{ key: 'A' }, { key: ' A ' }, { key: 'a' }, { key: 'a' }], plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', features: {} }, { key: 'p ', currency: 'USD', price: '1', interval: 'month', features: {} }, { key: 'p', currency: 'USD', price: '1', interval: 'month', features: {} }] },
    NONE,
    [
      'features[1].key: duplicate feature "A"',
      'features[2].key: "a" must be UPPER_SNAKE (A-Z, 0-9, _; starting with a letter)',
      'features[3].key: "a" must be UPPER_SNAKE (A-Z, 0-9, _; starting with a letter)',
      'features[3].key: duplicate feature "a"',
      'plans[2].key: duplicate plan "p"',
    ],
  ],
  [
    'the document: not an object, unknown top-level fields, features and plans not arrays',
    { features: {}, plans: 'x', 'a b': 1, extra: null },
    NONE,
    [
      '$["a b"]: unknown field (expected one of: features, plans, taxes, coupons)',
      '$.extra: unknown field (expected one of: features, plans, taxes, coupons)',
      'features: must be an array',
      'plans: must be an array',
    ],
  ],
  [
    'rollover: a non-negative max, only on a limited included quantity, no other field',
    { plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', features: { OCR_SCAN: { included: 10, rollover: { max: -1 } }, API_CALL: { included: null, rollover: { max: 5 } }, SEATS: { included: 1, rollover: {} }, STORAGE_GB: { included: 1, rollover: 5 }, REPORTS: { included: 1, rollover: { cap: 5 } } } }] },
    STORED,
    [
      'plans[0].features.OCR_SCAN.rollover.max: must not be negative',
      'plans[0].features.API_CALL.rollover: has no effect when included is null (unlimited); remove it or set included',
      'plans[0].features.SEATS.rollover.max: is required (the most units carried into a period)',
      'plans[0].features.STORAGE_GB.rollover: must be an object',
      'plans[0].features.REPORTS.rollover.cap: unknown field (expected one of: max)',
    ],
  ],
  [
    'resetEvery: day, week or month, shorter than the plan interval, not with rollover, not on unlimited without a limit',
    {
      plans: [
        { key: 'm', currency: 'USD', price: '1', interval: 'month', features: { OCR_SCAN: { included: 10, resetEvery: 'month' }, API_CALL: { included: 10, resetEvery: 'hour' }, SEATS: { included: 1, resetEvery: 'day', rollover: { max: 1 } }, STORAGE_GB: { included: null, resetEvery: 'week' } } },
        { key: 'y', currency: 'USD', price: '1', interval: 'year', features: { OCR_SCAN: { included: 10, resetEvery: 'month' }, API_CALL: { included: null, hardStop: true, limit: 5, resetEvery: 'day' } } },
        { key: 'p', currency: 'USD', price: '1', interval: 'month', features: { OCR_SCAN: { included: 0, overage: { model: 'percentage', rate: '1' }, resetEvery: 'day' }, API_CALL: { included: 0, overage: { model: 'percentage', rate: '1' }, rollover: { max: 1 } } } },
      ],
    },
    STORED,
    [
      'plans[0].features.API_CALL.resetEvery: must be "day", "week" or "month"',
      'plans[0].features.SEATS.resetEvery: cannot be combined with rollover (each window starts afresh; nothing carries)',
      'plans[0].features.STORAGE_GB.resetEvery: has no effect when included is null (unlimited) and there is no limit',
      'plans[2].features.OCR_SCAN.resetEvery: has no effect with percentage pricing (every event is priced; nothing is included per window)',
      'plans[2].features.API_CALL.rollover: has no effect with percentage pricing (nothing is included to carry)',
    ],
  ],
  [
    'resetEvery as long as the period',
    { plans: [{ key: 'm', currency: 'USD', price: '1', interval: 'month', features: { OCR_SCAN: { included: 10, resetEvery: 'month' } } }] },
    STORED,
    ['plans[0].features.OCR_SCAN.resetEvery: must be shorter than the plan\'s interval (month): one of "day", "week"'],
  ],
  [
    'resetEvery on a weighted_sum feature (a level over the whole period)',
    { plans: [{ key: 'm', currency: 'USD', price: '1', interval: 'month', features: { STORAGE_GB: { included: 10, resetEvery: 'day' } } }] },
    new Map([...STORED, ['STORAGE_GB', { key: 'STORAGE_GB', type: 'metered', aggregation: 'weighted_sum' } as Feature]]),
    ['plans[0].features.STORAGE_GB.resetEvery: has no meaning for STORAGE_GB: weighted_sum averages a level over the whole billing period'],
  ],
  [
    'keys that are not identifiers are quoted in paths',
    { plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', features: { 'a b': {}, 'OCR.SCAN': {} } }] },
    STORED,
    [
      'plans[0].features["a b"]: unknown feature "a b" (declare it under "features" or apply it first)',
      'plans[0].features["OCR.SCAN"]: unknown feature "OCR.SCAN" (declare it under "features" or apply it first)',
    ],
  ],
];

describe('catalog problems', () => {
  it.each(CASES)('%s', (_name, input, known, expected) => {
    expect(problemsOf(input, known)).toEqual(expected);
  });

  it('an own "__proto__" key (JSON.parse makes one) is an unknown field or feature like any other', () => {
    const doc = JSON.parse('{"__proto__": 1, "plans": [{"key": "p", "currency": "USD", "price": "1", "interval": "month", "features": {"__proto__": {}}}]}');
    expect(problemsOf(doc, NONE)).toEqual([
      '$.__proto__: unknown field (expected one of: features, plans, taxes, coupons)',
      'plans[0].features.__proto__: unknown feature "__proto__" (declare it under "features" or apply it first)',
    ]);
  });

  it('YAML values JSON cannot write (.nan, .inf) are refused like other non-decimals', async () => {
    const doc = await parseCatalogText(
      'features: [ { key: A } ]\nplans:\n  - { key: p, currency: USD, price: .inf, interval: month, trialDays: .nan, features: { A: { included: .inf, limit: -.inf } } }\n',
      'c.yaml',
    );
    expect(problemsOf(doc, NONE)).toEqual([
      'plans[0].price: must be a decimal string like "Infinity" (prices are strings so no float ever touches money)',
      'plans[0].trialDays: must be a whole number of days from 0 to 3650',
      'plans[0].features.A.included: must be a number or a decimal string',
      'plans[0].features.A.limit: must be a number or a decimal string',
    ]);
    expect(problemsOf(null, NONE)).toEqual(['$: must be an object']);
    expect(problemsOf([], NONE)).toEqual(['$: must be an object']);
    expect(problemsOf({ features: [], plans: [] }, NONE)).toEqual(['$: declares no features and no plans']);
  });

  it('normalizes an accepted file (YAML with a BOM): trimmed text, canonical quantities, defaults, terms only as given', async () => {
    const doc = await parseCatalogText(
      '\ufeff' +
        [
          'features:',
          '  - { key: " USERS ", aggregation: unique, uniqueBy: " user_id ", unit: ~ }',
          '  - { key: FLAG, type: boolean }',
          'plans:',
          '  - key: team',
          '    currency: eur',
          '    price: " 10.50 "',
          '    interval: year',
          '    features:',
          '      USERS: { included: 1.50, hardStop: true, overage: { model: graduated, minimum: "1", maximum: ~, tiers: [ { upTo: 1e2, unitPrice: "0.10" }, { unitPrice: "0", flatPrice: ~ } ] } }',
          '      FLAG: {}',
          '      OCR_SCAN: { enabled: false }',
        ].join('\n'),
      'c.yaml',
    );
    const spec = validateCatalog(doc, new Map([['OCR_SCAN', { key: 'OCR_SCAN', type: 'metered' } as Feature]]));
    // Compared as JSON so that key order (what is stored) is checked too.
    expect(JSON.stringify(spec)).toBe(
      JSON.stringify({
        features: [
          { key: 'USERS', name: 'USERS', unit: null, type: 'metered', aggregation: 'unique', uniqueBy: 'user_id', stripeMeter: null },
          { key: 'FLAG', name: 'FLAG', unit: null, type: 'boolean', aggregation: 'sum', uniqueBy: null, stripeMeter: null },
        ],
        plans: [
          {
            planKey: 'team', name: 'team', currency: 'EUR', price: '10.50', interval: 'year', trialDays: 0,
            features: {
              USERS: {
                featureKey: 'USERS', enabled: true, included: '1.5', hardStop: true, limit: '1.5',
                overage: {
                  model: 'graduated',
                  tiers: [{ upTo: '100', unitPrice: '0.10', flatPrice: null }, { upTo: null, unitPrice: '0', flatPrice: null }],
                  minimum: '1',
                },
              },
              FLAG: { featureKey: 'FLAG', enabled: true, included: null, hardStop: false, limit: null, overage: null },
              OCR_SCAN: { featureKey: 'OCR_SCAN', enabled: false, included: '0', hardStop: false, limit: null, overage: null },
            },
          },
        ],
      }),
    );
  });
});
