import type { Knex } from 'knex';

// A counter that every committed change to the catalog, tenants, subscriptions or quota
// overrides moves forward, by trigger, whoever the writer is (another process, a restore, a
// hand-written UPDATE). `billing serve` caches those terms and reads the counter with each
// check's usage query: equal means the cache is still exact (src/entitlements/terms-cache.ts).

export const WATCHED_TABLES = [
  'features',
  'plans',
  'plan_versions',
  'plan_features',
  'tenants',
  'subscriptions',
  'subscription_segments',
  'quota_overrides',
] as const;

const OPS = ['INSERT', 'UPDATE', 'DELETE'] as const;

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('terms_epoch', (t) => {
    t.integer('id').primary();
    t.bigInteger('epoch').notNullable();
    t.bigInteger('bumped_by'); // PostgreSQL: the transaction that last moved it
  });
  await knex('terms_epoch').insert({ id: 1, epoch: 0 });

  if (knex.client.config.client === 'pg') {
    // Deferred to commit: the bump becomes visible with the change it announces, and the
    // counter's row lock is the last lock a writer takes, so it cannot close a deadlock cycle.
    // One bump per transaction, however many rows it touches.
    await knex.raw(`
      CREATE FUNCTION bump_terms_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        UPDATE terms_epoch SET epoch = epoch + 1, bumped_by = txid_current()
         WHERE id = 1 AND bumped_by IS DISTINCT FROM txid_current();
        RETURN NULL;
      END $$`);
    for (const table of WATCHED_TABLES) {
      await knex.raw(
        `CREATE CONSTRAINT TRIGGER terms_epoch_bump AFTER INSERT OR UPDATE OR DELETE ON ${table} ` +
          'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_terms_epoch()',
      );
    }
    return;
  }
  // SQLite has one writer at a time and row triggers only.
  for (const table of WATCHED_TABLES) {
    for (const op of OPS) {
      await knex.raw(
        `CREATE TRIGGER terms_epoch_${table}_${op.toLowerCase()} AFTER ${op} ON ${table} ` +
          'BEGIN UPDATE terms_epoch SET epoch = epoch + 1 WHERE id = 1; END',
      );
    }
  }
}

export async function down(knex: Knex): Promise<void> {
  if (knex.client.config.client === 'pg') {
    for (const table of WATCHED_TABLES) await knex.raw(`DROP TRIGGER IF EXISTS terms_epoch_bump ON ${table}`);
    await knex.raw('DROP FUNCTION IF EXISTS bump_terms_epoch()');
  } else {
    for (const table of WATCHED_TABLES) {
      for (const op of OPS) await knex.raw(`DROP TRIGGER IF EXISTS terms_epoch_${table}_${op.toLowerCase()}`);
    }
  }
  await knex.schema.dropTable('terms_epoch');
}
