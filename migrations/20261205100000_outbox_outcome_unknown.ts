import type { Knex } from 'knex';

// Whether Stripe may have executed a row's last call (no answer, a 409 or a 5xx): past the
// 24 h key window such a meter event is dead, never re-sent. Rows written before this column
// get it from their last_error, which then began with `network:`, a 409 or a 5xx status.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('stripe_outbox', (t) => {
    t.boolean('outcome_unknown').notNullable().defaultTo(false);
  });
  await knex('stripe_outbox')
    .whereNot('status', 'sent')
    .whereNotNull('first_attempt_at')
    .andWhere((w) =>
      w
        .whereNull('last_error')
        .orWhere('last_error', 'like', 'network:%')
        .orWhere('last_error', 'like', '409 %')
        .orWhere('last_error', 'like', '409:%')
        .orWhere('last_error', 'like', '5__ %')
        .orWhere('last_error', 'like', '5__:%'),
    )
    .update({ outcome_unknown: true });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('stripe_outbox', (t) => {
    t.dropColumn('outcome_unknown');
  });
}
