import type { Knex } from 'knex';

// A tenant's feature's events in ingest order: `billing check` adds the events not yet
// aggregated (seq above the watermark) to the period's summary instead of re-reading the
// whole period, so a check costs the new events, not the tenant's volume.
//
// On PostgreSQL the index is built CONCURRENTLY, outside a transaction, so that ingest keeps
// writing while a large usage_events is indexed (a plain CREATE INDEX blocks every insert
// until it ends). If that build fails it leaves an invalid index behind: drop it and migrate
// again.
export const config = { transaction: false };

const NAME = 'usage_events_tenant_feature_seq';

export async function up(knex: Knex): Promise<void> {
  if (knex.client.config.client === 'pg') {
    await knex.raw(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${NAME} ON usage_events (tenant_id, feature_key, seq)`);
    return;
  }
  await knex.raw(`CREATE INDEX IF NOT EXISTS ${NAME} ON usage_events (tenant_id, feature_key, seq)`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX ${knex.client.config.client === 'pg' ? 'CONCURRENTLY ' : ''}IF EXISTS ${NAME}`);
}
