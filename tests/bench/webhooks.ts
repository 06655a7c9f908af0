import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { benchPgSchema } from './seed.js';
import { openDb } from '../../src/storage/db.js';
import { addEndpoint } from '../../src/webhooks/endpoints.js';
import { emitEvents } from '../../src/webhooks/events.js';
import { deliverWebhooks } from '../../src/webhooks/deliver.js';
import { signatureHeader } from '../../src/webhooks/signature.js';

/**
 * `billing webhook deliver` against a local receiver that answers 204, versus a baseline of
 * the same number of signed POSTs of the same bodies made straight with fetch at the same
 * concurrency, no database: the ratio is what the outbox (claiming, leases, recording each
 * outcome) costs per delivery. `npm run bench -- webhooks [--events N]`.
 */

const SECRET = 'whsec_bench_0123456789abcdef';
const CONCURRENCY = 4;

function arg(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}

async function receiver(): Promise<{ url: string; count: () => number; close: () => Promise<void> }> {
  let n = 0;
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      n++;
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  return { url, count: () => n, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

const bodyOf = (i: number) => ({ invoice: `in_${i}`, tenant: `t${i % 100}`, total: '11.00', currency: 'USD', lines: [1, 2, 3, 4].map((n) => ({ n, amount: `${n}.25` })) });

async function baseline(url: string, events: number): Promise<number> {
  const bodies = Array.from({ length: events }, (_, i) => JSON.stringify({ id: `evt_${i}`, type: 'invoice.created', created: 0, data: bodyOf(i) }));
  let next = 0;
  const t = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++];
        const r = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', 'Billing-Signature': signatureHeader(SECRET, Math.floor(Date.now() / 1000), body) } });
        await r.arrayBuffer();
      }
    }),
  );
  return performance.now() - t;
}

async function measure(label: string, url: string, cleanup: () => Promise<void>, events: number): Promise<void> {
  const rx = await receiver();
  try {
    const base = await baseline(rx.url, events);
    const db = await openDb(url);
    try {
      const now = Date.now();
      await addEndpoint(db, { url: rx.url, secret: SECRET }, { now, actor: 'bench' });
      await db.tx((t) => emitEvents(t.knex, Array.from({ length: events }, (_, i) => ({ type: 'invoice.created' as const, tenantId: `t${i % 100}`, data: bodyOf(i), at: now }))));
      const before = rx.count();
      const t = performance.now();
      let delivered = 0;
      for (;;) {
        const r = await deliverWebhooks(db, { now, concurrency: CONCURRENCY });
        if (r.errors.length) throw new Error(`bench delivery failed: ${r.errors[0].message}`);
        delivered += r.delivered;
        if (r.attempted === 0) break;
      }
      const ms = performance.now() - t;
      if (delivered !== events || rx.count() - before !== events) throw new Error(`bench delivered ${delivered}, receiver got ${rx.count() - before}, of ${events}`);
      console.log(
        `${label}: bare signed POST loop ${events} in ${base.toFixed(0)} ms (${((events / base) * 1000).toFixed(0)}/s); ` +
          `webhook deliver ${delivered} in ${ms.toFixed(0)} ms (${((delivered / ms) * 1000).toFixed(0)}/s); deliver/bare ×${(ms / base).toFixed(2)}`,
      );
    } finally {
      await db.close();
    }
  } finally {
    await rx.close();
    await cleanup();
  }
}

export async function run(args: string[]): Promise<void> {
  const events = arg(args, '--events', 5000);
  console.log(`${events} events to one endpoint, concurrency ${CONCURRENCY}, a local receiver answering 204`);
  const dir = mkdtempSync(path.join(tmpdir(), 'billing-bench-webhooks-'));
  await measure('sqlite', `sqlite:${path.join(dir, 'bench.db')}`, async () => rmSync(dir, { recursive: true, force: true }), events);
  const pg = await benchPgSchema('bench_webhooks');
  if (pg) await measure('pg', pg.url, pg.drop, events);
}
