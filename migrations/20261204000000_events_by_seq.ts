import type { Knex } from 'knex';

// A tenant's feature's events in ingest order: `billing check` adds the events not yet
// aggregated (seq above the watermark) to the period's summary instead of re-reading the
// whole period, so a check costs the new events, not the tenant's volume.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('usage_events', (t) => {
    t.index(['tenant_id', 'feature_key', 'seq'], 'usage_events_tenant_feature_seq');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('usage_events', (t) => {
    t.dropIndex(['tenant_id', 'feature_key', 'seq'], 'usage_events_tenant_feature_seq');
  });
}
