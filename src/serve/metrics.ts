/** In-process Prometheus metrics (text exposition format 0.0.4); labels are bounded sets. */

const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface Histogram {
  counts: number[]; // per bucket, non-cumulative; last slot is +Inf
  sum: number;
  count: number;
}

function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export class Metrics {
  private readonly requests = new Map<string, number>(); // "method\troute\tstatus"
  private readonly latency = new Map<string, Histogram>(); // route
  private readonly usage = new Map<string, number>(); // status
  private readonly checks = new Map<string, number>(); // reason
  inFlight = 0;

  /** `queueDepth`: requests waiting for a turn (read at scrape time). */
  constructor(private readonly queueDepth: () => number = () => 0) {}

  observeRequest(method: string, route: string, status: number, seconds: number): void {
    const key = `${method}\t${route}\t${status}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    let h = this.latency.get(route);
    if (!h) this.latency.set(route, (h = { counts: new Array(BUCKETS.length + 1).fill(0), sum: 0, count: 0 }));
    let i = 0;
    while (i < BUCKETS.length && seconds > BUCKETS[i]) i++;
    h.counts[i]++;
    h.sum += seconds;
    h.count++;
  }

  countUsage(status: string, n = 1): void {
    this.usage.set(status, (this.usage.get(status) ?? 0) + n);
  }

  countCheck(reason: string): void {
    this.checks.set(reason, (this.checks.get(reason) ?? 0) + 1);
  }

  render(): string {
    const out: string[] = [];
    out.push('# HELP billing_http_requests_total HTTP requests by method, route and status.');
    out.push('# TYPE billing_http_requests_total counter');
    for (const [k, n] of [...this.requests].sort()) {
      const [method, route, status] = k.split('\t');
      out.push(`billing_http_requests_total{method="${label(method)}",route="${label(route)}",status="${status}"} ${n}`);
    }
    out.push('# HELP billing_http_request_duration_seconds HTTP request latency by route.');
    out.push('# TYPE billing_http_request_duration_seconds histogram');
    for (const [route, h] of [...this.latency].sort()) {
      const r = label(route);
      let cum = 0;
      BUCKETS.forEach((le, i) => {
        cum += h.counts[i];
        out.push(`billing_http_request_duration_seconds_bucket{route="${r}",le="${le}"} ${cum}`);
      });
      out.push(`billing_http_request_duration_seconds_bucket{route="${r}",le="+Inf"} ${h.count}`);
      out.push(`billing_http_request_duration_seconds_sum{route="${r}"} ${h.sum}`);
      out.push(`billing_http_request_duration_seconds_count{route="${r}"} ${h.count}`);
    }
    out.push('# HELP billing_http_requests_in_flight Requests being handled.');
    out.push('# TYPE billing_http_requests_in_flight gauge');
    out.push(`billing_http_requests_in_flight ${this.inFlight}`);
    out.push('# HELP billing_http_requests_queued Requests waiting for a turn under the concurrency limit.');
    out.push('# TYPE billing_http_requests_queued gauge');
    out.push(`billing_http_requests_queued ${this.queueDepth()}`);
    out.push('# HELP billing_usage_events_total Usage events received over HTTP by result.');
    out.push('# TYPE billing_usage_events_total counter');
    for (const [status, n] of [...this.usage].sort()) out.push(`billing_usage_events_total{result="${label(status)}"} ${n}`);
    out.push('# HELP billing_entitlement_checks_total Entitlement checks by reason.');
    out.push('# TYPE billing_entitlement_checks_total counter');
    for (const [reason, n] of [...this.checks].sort()) out.push(`billing_entitlement_checks_total{reason="${label(reason)}"} ${n}`);
    return out.join('\n') + '\n';
  }
}
