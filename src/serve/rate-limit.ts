import { performance } from 'node:perf_hooks';

export interface RateLimitConfig {
  /** Sustained requests per second per client. */
  perSecond: number;
  /** Bucket size: requests a client may send at once after being idle. */
  burst: number;
}

export type TakeResult = { ok: true } | { ok: false; retryAfterSec: number };

interface Bucket {
  tokens: number;
  at: number; // monotonic ms of the last refill
}

// Past this many buckets, forget clients whose bucket has refilled (they lose nothing).
const SWEEP_AT = 10_000;

/** Token buckets keyed by client (service secret, JWT subject, or IP for unauthenticated calls). */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly config: RateLimitConfig,
    private readonly monotonicMs: () => number = () => performance.now(),
  ) {}

  take(key: string): TakeResult {
    const now = this.monotonicMs();
    const { perSecond, burst } = this.config;
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= SWEEP_AT) this.sweep(now);
      b = { tokens: burst, at: now };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * perSecond);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterSec: Math.max(1, Math.ceil((1 - b.tokens) / perSecond)) };
  }

  private sweep(now: number): void {
    const { perSecond, burst } = this.config;
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * perSecond >= burst) this.buckets.delete(k);
    }
  }
}
