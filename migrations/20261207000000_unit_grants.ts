import type { Knex } from 'knex';

// DESIGN.md §14: grants of units (top-ups of a feature's included quantity) and what each
// invoiced period drew from them. A draw on a void invoice does not count: the reissue draws again.
// Entitlement checks cache grant balances with the terms, so a grant, a draw or a voided invoice
// moves terms_epoch like any other change to terms (see 20261121004000_terms_epoch.ts).
const WATCHED = ['unit_grants', 'grant_uses'] as const;
const OPS = ['INSERT', 'UPDATE', 'DELETE'] as const;

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('unit_grants', (t) => {
    t.string('tenant_id').notNullable().references('tenants.id');
    t.string('id').notNullable(); // ug_<random>
    t.integer('seq').notNullable(); // creation order: the last tie-break when drawing
    t.string('feature_key').notNullable();
    t.string('quantity').notNullable(); // decimal string, > 0
    t.integer('priority').notNullable(); // lower first
    t.bigInteger('effective_at').notNullable();
    t.bigInteger('expires_at'); // null: never
    t.bigInteger('created_at').notNullable();
    t.bigInteger('voided_at');
    t.primary(['tenant_id', 'id']);
    t.unique(['tenant_id', 'seq']);
  });
  await knex.schema.createTable('grant_uses', (t) => {
    t.string('tenant_id').notNullable();
    t.string('grant_id').notNullable();
    t.string('invoice_id').notNullable();
    t.bigInteger('period_start').notNullable();
    t.string('quantity').notNullable(); // decimal string, > 0
    t.primary(['tenant_id', 'grant_id', 'invoice_id']);
    t.foreign(['tenant_id', 'grant_id']).references(['tenant_id', 'id']).inTable('unit_grants');
    t.foreign(['tenant_id', 'invoice_id']).references(['tenant_id', 'id']).inTable('invoices');
  });
  if (knex.client.config.client === 'pg') {
    for (const table of WATCHED) {
      await knex.raw(
        `CREATE CONSTRAINT TRIGGER terms_epoch_bump AFTER INSERT OR UPDATE OR DELETE ON ${table} ` +
          'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_terms_epoch()',
      );
    }
    await knex.raw(
      'CREATE CONSTRAINT TRIGGER terms_epoch_bump_void AFTER UPDATE OF status ON invoices DEFERRABLE INITIALLY DEFERRED ' +
        "FOR EACH ROW WHEN (NEW.status = 'void' AND OLD.status <> 'void') EXECUTE FUNCTION bump_terms_epoch()",
    );
    return;
  }
  for (const table of WATCHED) {
    for (const op of OPS) {
      await knex.raw(`CREATE TRIGGER terms_epoch_${table}_${op.toLowerCase()} AFTER ${op} ON ${table} BEGIN UPDATE terms_epoch SET epoch = epoch + 1 WHERE id = 1; END`);
    }
  }
  await knex.raw(
    "CREATE TRIGGER terms_epoch_invoices_void AFTER UPDATE OF status ON invoices WHEN NEW.status = 'void' AND OLD.status <> 'void' " +
      'BEGIN UPDATE terms_epoch SET epoch = epoch + 1 WHERE id = 1; END',
  );
}

export async function down(knex: Knex): Promise<void> {
  if (knex.client.config.client === 'pg') {
    await knex.raw('DROP TRIGGER IF EXISTS terms_epoch_bump_void ON invoices');
  } else {
    await knex.raw('DROP TRIGGER IF EXISTS terms_epoch_invoices_void');
    for (const table of WATCHED) for (const op of OPS) await knex.raw(`DROP TRIGGER IF EXISTS terms_epoch_${table}_${op.toLowerCase()}`);
  }
  await knex.schema.dropTableIfExists('grant_uses');
  await knex.schema.dropTableIfExists('unit_grants');
}
