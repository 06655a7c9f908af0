import type { Knex } from 'knex';

// Per tenant, how far back `billing retention` deleted raw events: every billing period of
// the tenant that ended at or before `purged_before` is known only from its usage summary
// (and what was invoiced), so reports read it from there (ops/retention.ts).
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('retention_horizons', (t) => {
    t.string('tenant_id').primary();
    t.bigInteger('purged_before').notNullable();
    t.bigInteger('updated_at').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('retention_horizons');
}
