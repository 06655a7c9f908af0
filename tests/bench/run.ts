/**
 * `npm run bench`: every benchmark prints its figures as ratios against a baseline measured
 * in the same run (never asserted by timed tests). Pass names to run a subset:
 * `npm run bench -- ingest`. PostgreSQL: BILLING_BENCH_PG_URL, else BILLING_TEST_PG_URL, else the
 * local test server; `--sqlite-only` skips it.
 */
type Bench = { name: string; run: (args: string[]) => Promise<void> };

const benches: Array<() => Promise<Bench>> = [
  // each area adds: async () => ({ name: 'x', run: (await import('./x.js')).run }),
  async () => ({ name: 'ingest', run: (await import('./ingest.js')).run }),
  async () => ({ name: 'overage', run: (await import('./overage.js')).run }),
  async () => ({ name: 'serve', run: (await import('./serve.js')).run }),
  async () => ({ name: 'aggregate', run: (await import('./aggregate.js')).run }),
  async () => ({ name: 'check', run: (await import('./check.js')).run }),
  async () => ({ name: 'invoice', run: (await import('./invoice.js')).run }),
  async () => ({ name: 'stripe', run: (await import('./stripe.js')).run }),
  async () => ({ name: 'ops', run: (await import('./ops.js')).run }),
];

async function main(): Promise<void> {
  // Every bench measures PostgreSQL too (the test server unless told otherwise); --sqlite-only skips it.
  if (!process.argv.includes('--sqlite-only')) {
    process.env.BILLING_BENCH_PG_URL ??= process.env.BILLING_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/test';
  }
  const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const loaded = await Promise.all(benches.map((b) => b()));
  for (const b of loaded) {
    if (wanted.length && !wanted.includes(b.name)) continue;
    console.log(`\n== bench: ${b.name}`);
    await b.run(process.argv.slice(2));
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
