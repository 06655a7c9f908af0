import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { Decimal, dec } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import { currencyDigits, formatMoney } from '../domain/money.js';
import { addMonthsClamped, type Instant } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { withTx } from '../storage/sql.js';
import { emitEvent } from '../webhooks/events.js';
import { grantToJson } from './json.js';

/** What is left of one prepaid credit grant (one month's instance of a recurring one). */
export interface CreditAvailable {
  grantId: string;
  /** Recurrence instance (0 for a one-off grant). */
  instance: number;
  name: string;
  priority: number;
  expiresAt: Instant | null;
  /** Creation order within the tenant. */
  seq: number;
  /** Decimal string in the invoice currency, > 0. */
  balance: string;
}

type Q = Knex | Knex.Transaction;

// Prepaid credits (DESIGN.md §13): grants and what invoices took from them. A grant's balance
// is derived (amount − uses on non-void invoices), so voiding an invoice gives its credit back.
// A monthly grant renews: instance k is effective from the k-th monthly anniversary of its
// start until the next one (or its expiry), each with the full amount; what is left lapses.

export interface CreditGrant {
  id: string;
  tenantId: string;
  seq: number;
  name: string;
  currency: string;
  amount: string;
  priority: number;
  effectiveAt: Instant;
  expiresAt: Instant | null;
  recurring: 'monthly' | null;
  source: 'grant' | 'credit_note';
  createdAt: Instant;
  voidedAt: Instant | null;
}

export interface GrantInput {
  tenantId: string;
  amount: string;
  priority?: number;
  effective?: Instant;
  expires?: Instant;
  recurring?: 'monthly';
  name?: string;
  /** A fixed id (the demo's, so that its output is the same every run); default random. */
  id?: string;
}

/** One grant instance's state at an instant. */
export interface GrantInstance {
  grant: CreditGrant;
  instance: number;
  from: Instant;
  /** Where this instance lapses: the next renewal, the expiry, or null. */
  until: Instant | null;
  used: string;
  balance: string;
}

const AMOUNT = /^\d{1,15}(\.\d{1,6})?$/;

function grantFromRow(r: Record<string, any>): CreditGrant {
  const n = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    id: r.id,
    tenantId: r.tenant_id,
    seq: Number(r.seq),
    name: r.name,
    currency: r.currency,
    amount: r.amount,
    priority: Number(r.priority),
    effectiveAt: Number(r.effective_at),
    expiresAt: n(r.expires_at),
    recurring: r.recurring ?? null,
    source: r.source,
    createdAt: Number(r.created_at),
    voidedAt: n(r.voided_at),
  };
}

/** The span of instance k of a grant. */
function instanceSpan(g: CreditGrant, k: number): { from: Instant; until: Instant | null } {
  if (g.recurring === null) return { from: g.effectiveAt, until: g.expiresAt };
  const from = addMonthsClamped(g.effectiveAt, k);
  const next = addMonthsClamped(g.effectiveAt, k + 1);
  return { from, until: g.expiresAt === null ? next : Math.min(next, g.expiresAt) };
}

/** Instances of a grant started by `at` (a recurring grant: one per month; stops at expiry or void). */
function instancesUpTo(g: CreditGrant, at: Instant): number[] {
  if (g.recurring === null) return g.effectiveAt <= at ? [0] : [];
  const out: number[] = [];
  const stop = Math.min(g.expiresAt ?? Infinity, g.voidedAt ?? Infinity);
  for (let k = 0; ; k++) {
    const from = addMonthsClamped(g.effectiveAt, k);
    if (from > at || (k > 0 && from >= stop)) break;
    out.push(k);
  }
  return out;
}

/** Used amount per `${grantId}|${instance}`, non-void invoices only. */
async function usesOf(q: Q, tenantId: string): Promise<Map<string, Decimal>> {
  const rows = await q('credit_uses as u')
    .join('invoices as i', function () {
      this.on('i.tenant_id', 'u.tenant_id').andOn('i.id', 'u.invoice_id');
    })
    .where('u.tenant_id', tenantId)
    .whereNot('i.status', 'void')
    .select('u.grant_id', 'u.instance', 'u.amount');
  const out = new Map<string, Decimal>();
  for (const r of rows) {
    const k = `${r.grant_id}|${Number(r.instance)}`;
    out.set(k, (out.get(k) ?? dec(0)).plus(r.amount));
  }
  return out;
}

async function loadGrants(q: Q, tenantId: string): Promise<CreditGrant[]> {
  return (await q('credit_grants').select('*').where('tenant_id', tenantId).orderBy('seq')).map(grantFromRow);
}

/** Every grant instance started by `at`, with what is used and left of it. */
export async function grantInstances(q: Q, tenantId: string, at: Instant): Promise<GrantInstance[]> {
  const grants = await loadGrants(q, tenantId);
  if (grants.length === 0) return [];
  const uses = await usesOf(q, tenantId);
  const out: GrantInstance[] = [];
  for (const g of grants) {
    for (const k of instancesUpTo(g, at)) {
      const used = uses.get(`${g.id}|${k}`) ?? dec(0);
      const span = instanceSpan(g, k);
      out.push({ grant: g, instance: k, ...span, used: formatMoney(used, g.currency), balance: formatMoney(Decimal.max(dec(g.amount).minus(used), 0), g.currency) });
    }
  }
  return out;
}

const live = (i: GrantInstance, at: Instant) => i.from <= at && (i.until === null || at < i.until) && (i.grant.voidedAt === null || at < i.grant.voidedAt);

/** Credit an invoice issued at `at` in `currency` may use (rate/credits.ts decides the order). */
export async function availableCredits(q: Q, tenantId: string, currency: string, at: Instant): Promise<CreditAvailable[]> {
  return (await grantInstances(q, tenantId, at))
    .filter((i) => i.grant.currency === currency && live(i, at) && dec(i.balance).gt(0))
    .map((i) => ({
      grantId: i.grant.id,
      instance: i.instance,
      name: i.grant.name,
      priority: i.grant.priority,
      expiresAt: i.until,
      seq: i.grant.seq,
      balance: i.balance,
    }));
}

/** The tenant's prepaid balance at `at`, per currency. */
export async function creditBalance(db: Db, tenantId: string, at: Instant): Promise<Array<{ currency: string; balance: string; grants: number }>> {
  await mustExist(db.knex, tenantId);
  const by = new Map<string, { balance: Decimal; grants: number }>();
  for (const i of await grantInstances(db.knex, tenantId, at)) {
    if (!live(i, at)) continue;
    const b = by.get(i.grant.currency) ?? { balance: dec(0), grants: 0 };
    by.set(i.grant.currency, { balance: b.balance.plus(i.balance), grants: b.grants + (dec(i.balance).gt(0) ? 1 : 0) });
  }
  return [...by.entries()].sort().map(([currency, b]) => ({ currency, balance: formatMoney(b.balance, currency), grants: b.grants }));
}

/**
 * The prepaid credit the tenant's next invoice can draw on at `at` (`billing check --json`, the
 * usage API): what is left of its live grants in its billing currency (grants in another
 * currency never apply to its invoices). Null for an unknown tenant or one that never had a grant.
 */
export async function prepaidCredit(q: Q, tenantId: string, at: Instant): Promise<{ balance: string; currency: string } | null> {
  const last = await q('credit_grants').where('tenant_id', tenantId).orderBy('seq', 'desc').first('currency');
  if (!last) return null;
  const tenant = await q('tenants').where({ id: tenantId }).first();
  const currency: string = (tenant && (await tenantCurrency(q, tenant))) ?? last.currency;
  let balance = dec(0);
  for (const i of await grantInstances(q, tenantId, at)) {
    if (i.grant.currency === currency && live(i, at)) balance = balance.plus(i.balance);
  }
  return { balance: formatMoney(balance, currency), currency };
}

export interface LedgerEntry {
  at: Instant;
  kind: 'grant' | 'use' | 'expiry' | 'void';
  grantId: string;
  instance: number;
  /** Signed: + granted, − used, expired or voided. */
  amount: string;
  currency: string;
  invoice: string | null;
  note: string;
}

/** `billing credit list`: every grant, use, expiry and void of the tenant, oldest first. */
export async function creditLedger(db: Db, tenantId: string, at: Instant): Promise<LedgerEntry[]> {
  const q = db.knex;
  await mustExist(q, tenantId);
  const out: LedgerEntry[] = [];
  const instances = await grantInstances(q, tenantId, at);
  const uses = await q('credit_uses as u')
    .join('invoices as i', function () {
      this.on('i.tenant_id', 'u.tenant_id').andOn('i.id', 'u.invoice_id');
    })
    .where('u.tenant_id', tenantId)
    .whereNot('i.status', 'void')
    .select('u.grant_id', 'u.instance', 'u.amount', 'i.number', 'i.issued_at');
  for (const i of instances) {
    const g = i.grant;
    out.push({ at: i.from, kind: 'grant', grantId: g.id, instance: i.instance, amount: formatMoney(g.amount, g.currency), currency: g.currency, invoice: null, note: g.name });
    const ended = [i.until, g.voidedAt].filter((t): t is number => t !== null && t <= at);
    const end = ended.length > 0 ? Math.min(...ended) : null;
    if (end !== null && dec(i.balance).gt(0)) {
      const kind = g.voidedAt !== null && g.voidedAt === end ? 'void' : 'expiry';
      out.push({ at: end, kind, grantId: g.id, instance: i.instance, amount: formatMoney(dec(i.balance).neg(), g.currency), currency: g.currency, invoice: null, note: g.name });
    }
  }
  for (const u of uses) {
    const g = instances.find((i) => i.grant.id === u.grant_id)?.grant;
    if (!g) continue;
    out.push({ at: Number(u.issued_at), kind: 'use', grantId: u.grant_id, instance: Number(u.instance), amount: formatMoney(dec(u.amount).neg(), g.currency), currency: g.currency, invoice: u.number, note: g.name });
  }
  const order = { grant: 0, use: 1, expiry: 2, void: 2 };
  return out.sort((a, b) => a.at - b.at || order[a.kind] - order[b.kind]);
}

async function mustExist(q: Q, tenantId: string): Promise<Record<string, any>> {
  const t = await q('tenants').where({ id: tenantId }).first();
  if (!t) throw new BillingError('not_found', `unknown tenant "${tenantId}" (create it with \`billing tenant create\`)`);
  return t;
}

/** The currency a tenant is billed in: its own, else its latest subscription's. */
async function tenantCurrency(q: Q, tenant: Record<string, any>): Promise<string | null> {
  if (tenant.currency) return tenant.currency;
  const sub = await q('subscriptions').where({ tenant_id: tenant.id }).orderBy('started_at', 'desc').first('currency');
  return sub?.currency ?? null;
}

/** `billing credit grant`: validates, stores and audits one grant; also used for credit notes on paid invoices. */
export async function grantCredit(
  db: Db | Knex.Transaction,
  input: GrantInput & { source?: 'grant' | 'credit_note'; currency?: string },
  opts: { now: Instant; actor: string },
): Promise<CreditGrant> {
  if (!AMOUNT.test(input.amount) || dec(input.amount).lte(0)) throw new BillingError('invalid_input', `amount "${input.amount}" must be a positive decimal, like "50.00"`);
  const priority = input.priority ?? 0;
  if (!Number.isInteger(priority) || priority < 0 || priority > 1000) throw new BillingError('usage', '--priority must be a whole number from 0 to 1000');
  const effective = input.effective ?? opts.now;
  if (input.expires !== undefined && input.expires <= effective) throw new BillingError('invalid_input', '--expires must be after the grant takes effect');
  const name = (input.name ?? 'Prepaid credit').trim();
  if (name === '' || name.length > 200) throw new BillingError('invalid_input', '--name must be 1 to 200 characters');
  const run = async (trx: Knex.Transaction) => {
    const tenant = await trx('tenants').where({ id: input.tenantId }).forUpdate().first();
    if (!tenant) throw new BillingError('not_found', `unknown tenant "${input.tenantId}" (create it with \`billing tenant create\`)`);
    const currency = input.currency ?? (await tenantCurrency(trx, tenant));
    if (!currency) throw new BillingError('invalid_input', `tenant "${input.tenantId}" has no currency yet: subscribe it to a plan or set one with \`billing tenant update --currency\``);
    if (dec(input.amount).decimalPlaces() > currencyDigits(currency)) {
      throw new BillingError('invalid_input', `amount "${input.amount}" has more decimals than ${currency} has (${currencyDigits(currency)})`);
    }
    const last = await trx('credit_grants').where('tenant_id', input.tenantId).max('seq as seq').first();
    const row = {
      tenant_id: input.tenantId,
      id: input.id ?? `cg_${randomBytes(8).toString('hex')}`,
      seq: Number(last?.seq ?? 0) + 1,
      name,
      currency,
      amount: formatMoney(input.amount, currency),
      priority,
      effective_at: effective,
      expires_at: input.expires ?? null,
      recurring: input.recurring ?? null,
      source: input.source ?? 'grant',
      created_at: opts.now,
      voided_at: null,
    };
    await trx('credit_grants').insert(row);
    const g = grantFromRow(row);
    await writeAudit(trx, { at: opts.now, actor: opts.actor, tenantId: input.tenantId, entity: 'credit_grant', entityId: g.id, action: 'create', after: g });
    return g;
  };
  return 'knex' in db ? withTx(db, run) : run(db);
}

/** `billing credit void`: what is left of the grant lapses now; what invoices used stays used. */
export async function voidCredit(db: Db, tenantId: string, id: string, opts: { now: Instant; actor: string }): Promise<CreditGrant> {
  return withTx(db, async (trx) => {
    const row = await trx('credit_grants').where({ tenant_id: tenantId, id }).forUpdate().first();
    if (!row || row.voided_at !== null) {
      throw new BillingError('not_found', `tenant "${tenantId}" has no active credit grant "${id}"${row ? ' (already void)' : ''}; list them with \`billing credit list ${tenantId}\``);
    }
    await trx('credit_grants').where({ tenant_id: tenantId, id }).update({ voided_at: opts.now });
    const g = grantFromRow({ ...row, voided_at: opts.now });
    await writeAudit(trx, { at: opts.now, actor: opts.actor, tenantId, entity: 'credit_grant', entityId: id, action: 'void', before: grantFromRow(row), after: g });
    return g;
  });
}

/** What an invoice took from each grant, recorded in the invoice's transaction. */
export async function recordCreditUses(
  trx: Knex.Transaction,
  tenantId: string,
  invoiceId: string,
  uses: Array<{ grantId: string; instance: number; amount: string }>,
  opts: { now: Instant; actor: string },
): Promise<void> {
  if (uses.length === 0) return;
  await trx('credit_uses').insert(uses.map((u) => ({ tenant_id: tenantId, grant_id: u.grantId, instance: u.instance, invoice_id: invoiceId, amount: u.amount })));
  // A grant instance this invoice used up is an event (alerts and webhooks read the audit log).
  const used = await usesOf(trx, tenantId);
  const grants = new Map((await loadGrants(trx, tenantId)).map((g) => [g.id, g]));
  for (const u of uses) {
    const g = grants.get(u.grantId);
    if (!g || dec(g.amount).gt(used.get(`${u.grantId}|${u.instance}`) ?? dec(0))) continue;
    await writeAudit(trx, {
      at: opts.now, actor: opts.actor, tenantId, entity: 'credit_grant', entityId: g.id, action: 'depleted',
      after: { instance: u.instance, amount: g.amount, currency: g.currency, invoiceId },
    });
    await emitEvent(trx, { type: 'credit.depleted', tenantId, data: { ...grantToJson(g), instance: u.instance, invoice: invoiceId }, at: opts.now });
  }
}
