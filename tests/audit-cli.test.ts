// billing audit as people and scripts read it: ISO times throughout, and who did it.
import { userInfo } from 'node:os';
import { expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { describeEachDb } from './helpers/db.js';

const SEED = new URL('../seeds/catalog.json', import.meta.url).pathname;
const NOW = '2026-01-01T00:00:00Z';

describeEachDb('billing audit (CLI)', (t) => {
  it('shows instants inside snapshots as ISO strings and names the OS user when $USER is unset', async () => {
    const { url } = t();
    const env = { USER: '', BILLING_ACTOR: '' };
    expect((await runCli(['catalog', 'apply', SEED], { db: url, now: NOW, env })).code).toBe(0);
    expect((await runCli(['tenant', 'create', 'acme', '--name', 'Acme'], { db: url, now: NOW, env })).code).toBe(0);
    expect((await runCli(['subscribe', 'acme', 'starter'], { db: url, now: NOW, env })).code).toBe(0);
    const r = await runCli(['audit', '--json', '--tenant', 'acme'], { db: url });
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout);
    expect(rows.map((e: { entity: string }) => e.entity)).toEqual(['tenant', 'subscription']);
    for (const e of rows) expect(e.actor).toBe(`cli:${userInfo().username}`);
    expect(rows[0]).toMatchObject({ at: '2026-01-01T00:00:00.000Z', after: { id: 'acme', createdAt: '2026-01-01T00:00:00.000Z' } });
    expect(rows[1].after.subscription).toMatchObject({ anchorAt: '2026-01-01T00:00:00.000Z', startedAt: '2026-01-01T00:00:00.000Z', cancelAt: null });
    expect(rows[1].after.segments[0]).toMatchObject({ startsAt: '2026-01-01T00:00:00.000Z', seq: 1, planVersion: 1 });
    // No epoch milliseconds left anywhere.
    expect(r.stdout).not.toMatch(/:\s*\d{12,}/);
    // $USER, when set, still names the actor.
    await runCli(['tenant', 'create', 'globex'], { db: url, now: NOW, env: { USER: 'alice', BILLING_ACTOR: '' } });
    const g = JSON.parse((await runCli(['audit', '--json', '--tenant', 'globex'], { db: url })).stdout);
    expect(g[0].actor).toBe('cli:alice');
  });
});
