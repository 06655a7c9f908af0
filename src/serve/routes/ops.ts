import type { Reply, RouteContext } from './types.js';

const DB_PROBE_TIMEOUT_MS = 2000;

/** GET /health: 200 when the database answers, 503 otherwise (for load balancers). */
export async function healthRoute(ctx: RouteContext): Promise<Reply> {
  let database: 'ok' | 'error' = 'ok';
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      ctx.db.knex.raw('select 1'),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), DB_PROBE_TIMEOUT_MS))),
    ]);
  } catch {
    database = 'error';
  } finally {
    clearTimeout(timer);
  }
  const status = database === 'ok' ? 'ok' : 'error';
  return {
    status: status === 'ok' ? 200 : 503,
    body: { status, service: 'billing', timestamp: new Date(ctx.now).toISOString(), database },
  };
}

/** GET /metrics: Prometheus text format. */
export async function metricsRoute(ctx: RouteContext): Promise<Reply> {
  return { status: 200, text: await ctx.metrics.render(), contentType: ctx.metrics.contentType };
}
