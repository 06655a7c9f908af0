/**
 * `npm run bench`: every benchmark prints its figures as ratios against a baseline measured
 * in the same run (never asserted by timed tests). Pass names to run a subset:
 * `npm run bench -- ingest`.
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
