// Test-only: registers vitest hooks, so benches (plain node) must not import it.
import { afterEach, beforeEach } from 'vitest';
import { FakeStripe } from './fake-stripe.js';
import { T0 } from './stripe-scenario.js';
import type { StripeConfig } from '../../src/stripe/config.js';
import type { SyncOptions } from '../../src/stripe/sync.js';

/**
 * A fake Stripe started at T0 for each test (closed after it), with the client config and the
 * sync options every scenario uses: no rate limit, fixed jitter, no real backoff sleeps.
 */
export function useFakeStripe() {
  let fake: FakeStripe | undefined;
  beforeEach(async () => {
    fake = await FakeStripe.start({ now: T0 });
  });
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
  });
  const world = {
    get fake(): FakeStripe {
      if (!fake) throw new Error('the fake Stripe runs only inside a test');
      return fake;
    },
    config(overrides: Partial<StripeConfig> = {}): StripeConfig {
      return { secretKey: 'sk_test_fake', apiBase: world.fake.url, webhookSecret: null, timeoutMs: 2000, concurrency: 4, maxRequestsPerSecond: 0, ...overrides };
    },
    syncOpts<T extends Partial<SyncOptions>>(now: number, extra: T = {} as T): SyncOptions & T {
      return { now, actor: 'test', stripe: world.config(), random: () => 0.5, sleep: async () => {}, ...extra };
    },
  };
  return world;
}
