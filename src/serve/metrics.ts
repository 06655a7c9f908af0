import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Prometheus metrics of one server, on its own registry (not prom-client's global one) so
 * several servers in a process, and tests, never share counts. Labels are bounded sets.
 */
export class Metrics {
  private readonly registry = new Registry();
  private readonly requests = new Counter({
    name: 'billing_http_requests_total',
    help: 'HTTP requests by method, route and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  private readonly latency = new Histogram({
    name: 'billing_http_request_duration_seconds',
    help: 'HTTP request latency by route.',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  private readonly inFlight = new Gauge({ name: 'billing_http_requests_in_flight', help: 'Requests being handled.', registers: [this.registry] });
  private readonly usage = new Counter({
    name: 'billing_usage_events_total',
    help: 'Usage events received over HTTP by result.',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  private readonly checks = new Counter({
    name: 'billing_entitlement_checks_total',
    help: 'Entitlement checks by reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  /** `queueDepth`: requests waiting for a turn (read at scrape time). */
  constructor(queueDepth: () => number = () => 0) {
    new Gauge({
      name: 'billing_http_requests_queued',
      help: 'Requests waiting for a turn under the concurrency limit.',
      registers: [this.registry],
      collect() {
        this.set(queueDepth());
      },
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  requestStarted(): void {
    this.inFlight.inc();
  }

  observeRequest(method: string, route: string, status: number, seconds: number): void {
    this.inFlight.dec();
    this.requests.inc({ method, route, status: String(status) });
    this.latency.observe({ route }, seconds);
  }

  countUsage(status: string, n = 1): void {
    this.usage.inc({ result: status }, n);
  }

  countCheck(reason: string): void {
    this.checks.inc({ reason });
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
