/**
 * `npm run bench`: every benchmark prints its figures as ratios against a baseline measured
 * in the same run (never asserted by timed tests) and writes them, with the machine's
 * description, into docs/performance-results.md. Pass names to run a subset:
 * `npm run bench -- ingest`. PostgreSQL: BILLING_BENCH_PG_URL, else BILLING_TEST_PG_URL, else the
 * local test server; `--sqlite-only` skips it.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A bench that cannot run here (a missing optional tool) returns 'skipped' and keeps its previous section. */
type Run = (args: string[]) => Promise<void | 'skipped'>;

/** The one results document: every figure lives here, never in comments or READMEs. */
const RESULTS = path.resolve(process.env.BILLING_BENCH_RESULTS ?? 'docs/performance-results.md');
const HEADER = `# Performance results

Written by \`npm run bench\` (tests/bench/run.ts): each section is the output of the latest run
of that bench, with the machine it ran on. What each figure compares against is described in
docs/reference.md and docs/operations.md; a bench not run keeps its previous section. Do not edit by hand.
`;

// Loaded only when run, so one bench's imports cannot stop the others.
const benches: Array<[string, () => Promise<Run>]> = [
  // each area adds: ['x', async () => (await import('./x.js')).run],
  ['ingest', async () => (await import('./ingest.js')).run],
  ['overage', async () => (await import('./overage.js')).run],
  ['serve', async () => (await import('./serve.js')).run],
  ['serve-framework', async () => (await import('./serve-framework.js')).run],
  ['aggregate', async () => (await import('./aggregate.js')).run],
  ['check', async () => (await import('./check.js')).run],
  ['invoice', async () => (await import('./invoice.js')).run],
  ['stripe', async () => (await import('./stripe.js')).run],
  ['ops', async () => (await import('./ops.js')).run],
  ['onboard', async () => (await import('./onboard.js')).run],
  ['webhooks', async () => (await import('./webhooks.js')).run],
];

async function main(): Promise<void> {
  // Every bench measures PostgreSQL too (the test server unless told otherwise); --sqlite-only skips it.
  if (!process.argv.includes('--sqlite-only')) {
    process.env.BILLING_BENCH_PG_URL ??= process.env.BILLING_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/test';
  }
  const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  for (const [name, load] of benches) {
    if (wanted.length && !wanted.includes(name)) continue;
    const run = await load();
    console.log(`\n== bench: ${name}`);
    let skipped = false;
    const output = await captured(async () => {
      skipped = (await run(process.argv.slice(2))) === 'skipped';
    });
    if (!skipped) writeSection(name, output);
  }
  console.log(`\nresults written to ${path.relative(process.cwd(), RESULTS)}`);
}

/** Run fn, echoing and keeping what it prints on stdout. */
async function captured(fn: () => Promise<void>): Promise<string> {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => {
    lines.push(args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '));
    log(...args);
  };
  try {
    await fn();
  } finally {
    console.log = log;
  }
  return lines.join('\n').trim();
}

function machine(): string {
  const cpus = os.cpus();
  return [
    `- run: ${new Date().toISOString()}, \`${['npm run bench --', ...process.argv.slice(2)].join(' ')}\``,
    `- machine: ${os.type()} ${os.release()} ${os.arch()}, ${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    `- node ${process.version}; PostgreSQL: ${process.env.BILLING_BENCH_PG_URL ? 'measured' : 'skipped (--sqlite-only)'}`,
  ].join('\n');
}

/** Replace (or append) the `## <name>` section of the results document. */
function writeSection(name: string, output: string): void {
  const text = existsSync(RESULTS) ? readFileSync(RESULTS, 'utf8') : HEADER;
  const sections = new Map<string, string>();
  const parts = text.split(/^(?=## )/m);
  for (const part of parts.slice(1)) sections.set(part.slice(3, part.indexOf('\n')).trim(), part.trimEnd());
  sections.set(name, `## ${name}\n\n${machine()}\n\n\`\`\`\n${output}\n\`\`\``);
  mkdirSync(path.dirname(RESULTS), { recursive: true });
  writeFileSync(RESULTS, [HEADER.trimEnd(), ...sections.values()].join('\n\n') + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
