import type { Command } from 'commander';

/**
 * The Examples section of every command's --help, by command path. tests/cli-help.test.ts
 * holds this list to the registered commands: each has examples, and each example names only
 * options its command (or the program) defines.
 */
export const EXAMPLES: Record<string, string[]> = {
  demo: ['billing demo', 'billing demo --keep'],
  migrate: ['billing migrate --db postgres://billing@localhost/billing', 'billing migrate status', 'billing migrate down'],
  ingest: [
    'billing ingest usage-2026-03.csv',
    'gunzip -c export.ndjson.gz | billing ingest - --format ndjson',
    'billing ingest legacy.csv --map account=tenant_id --map sku=feature_key --rejects rejects.csv',
    "billing ingest excel-export.csv --delimiter ';' --assume-utc",
  ],
  record: ['billing record --tenant acme --feature API_CALL --quantity 1 --event-id job_abc'],
  overage: ['billing overage', 'billing overage --tenant acme --json'],
  catalog: ['billing catalog apply seeds/catalog.json', 'billing catalog show'],
  'catalog apply': ['billing catalog apply catalog.yaml --dry-run', 'billing catalog apply seeds/catalog.json'],
  'catalog show': ['billing catalog show', 'billing catalog show --plan starter --version 2 --json'],
  tenant: ['billing tenant create acme --name "Acme Inc" --currency USD', 'billing tenant import tenants.csv', 'billing tenant list'],
  'tenant create': ['billing tenant create acme --name "Acme Inc" --currency USD', 'BILLING_DEFAULT_CURRENCY=EUR billing tenant create globex'],
  'tenant list': ['billing tenant list', 'billing tenant list --json'],
  'tenant show': ['billing tenant show acme', 'billing tenant show acme --json'],
  'tenant update': ['billing tenant update acme --name "Acme GmbH"', 'billing tenant update acme --no-currency'],
  'tenant import': [
    'billing tenant import tenants.csv --dry-run',
    'billing tenant import - --json < tenants.ndjson',
  ],
  subscribe: ['billing subscribe acme starter', 'billing subscribe acme pro --start 2026-01-15T00:00:00Z --trial-days 14'],
  subscription: ['billing subscription show acme', 'billing subscription change acme pro --at period-end'],
  'subscription show': ['billing subscription show acme --json'],
  'subscription change': ['billing subscription change acme pro', 'billing subscription change acme starter --at period-end'],
  'subscription cancel': ['billing subscription cancel acme', 'billing subscription cancel acme --at now'],
  quota: ['billing quota set acme OCR_SCAN --included 5000', 'billing quota list acme'],
  'quota set': ['billing quota set acme OCR_SCAN --included 5000 --unit-price 0.01', 'billing quota set acme API_CALL --hard-stop --limit 100000'],
  'quota list': ['billing quota list acme --json'],
  discount: ['billing discount add acme --percent 10 --duration forever', 'billing discount list acme'],
  'discount add': [
    'billing discount add acme --percent 10 --duration repeating --periods 3',
    'billing discount add acme --amount 25.00 --duration once --start 2026-02-01T00:00:00Z',
    'billing discount add acme --percent 50 --feature OCR_SCAN --duration forever',
    'billing discount add acme --coupon LAUNCH25',
  ],
  'discount list': ['billing discount list acme', 'billing discount list acme --json'],
  'discount remove': ['billing discount remove acme dsc_0123456789abcdef'],
  tax: ['billing tax set acme --name VAT --rate 19', 'billing tax show acme'],
  'tax set': ['billing tax set acme --name VAT --rate 19', 'billing tax set acme --name GST --rate 10 --inclusive', 'billing tax set acme --none'],
  'tax show': ['billing tax show acme', 'billing tax show acme --json'],
  credit: ['billing credit grant acme 50.00', 'billing credit balance acme'],
  'credit grant': [
    'billing credit grant acme 50.00 --expires 2026-12-31T00:00:00Z',
    'billing credit grant acme 20.00 --recurring monthly --priority 1 --name "Monthly allowance"',
  ],
  'credit list': ['billing credit list acme', 'billing credit list acme --json'],
  'credit balance': ['billing credit balance acme', 'billing credit balance acme --json'],
  'credit void': ['billing credit void acme cg_0123456789abcdef'],
  grant: ['billing grant add acme api-calls 5000 --expires 2027-01-01T00:00:00Z', 'billing grant list acme'],
  'grant add': [
    'billing grant add acme api-calls 5000',
    'billing grant add acme api-calls 1000 --priority 1 --effective 2026-12-01T00:00:00Z --expires 2027-01-01T00:00:00Z',
  ],
  'grant list': ['billing grant list acme', 'billing grant list acme --json'],
  'grant void': ['billing grant void acme ug_0123456789abcdef'],
  alert: ['billing alert add acme API_CALL --usage-percent 80', 'billing alert list --fired'],
  'alert add': [
    'billing alert add acme API_CALL --usage-percent 80',
    'billing alert add acme API_CALL --usage-percent 100 --of limit',
    'billing alert add acme --spend 500.00',
    'billing alert add acme --credit-below 20.00',
  ],
  'alert list': ['billing alert list', 'billing alert list --tenant acme --fired --json'],
  'alert remove': ['billing alert remove al_0123456789abcdef'],
  'credit-note': ['billing credit-note create INV-000001 --amount 20.00 --reason "outage credit"', 'billing credit-note list'],
  'credit-note create': [
    'billing credit-note create INV-000001 --amount 20.00 --reason "outage credit"',
    'billing credit-note create INV-000001 --line 2 --reason "usage billed twice"',
    'billing credit-note create INV-000003 --amount 5.00 --reason "goodwill" --refund',
  ],
  'credit-note list': ['billing credit-note list', 'billing credit-note list --tenant acme --json'],
  'credit-note show': ['billing credit-note show CN-000001'],
  'credit-note export': ['billing credit-note export --out credit-notes.csv', 'billing credit-note export --tenant acme --format json'],
  invoice: ['billing invoice generate --finalize', 'billing invoice list --tenant acme', 'billing invoice export INV-000001 --format html --out inv.html'],
  'invoice generate': ['billing invoice generate --dry-run', 'billing invoice generate --finalize --now 2026-04-01T00:00:00Z'],
  'invoice list': ['billing invoice list --status open', 'billing invoice list --tenant acme --json'],
  'invoice show': ['billing invoice show INV-000001', 'billing invoice show INV-000001 --json'],
  'invoice preview': ['billing invoice preview acme'],
  'invoice finalize': ['billing invoice finalize INV-000001'],
  'invoice void': ['billing invoice void INV-000001 --reason "wrong plan"'],
  'invoice export': ['billing invoice export INV-000001 --format csv', 'billing invoice export INV-000001 --format html --out inv.html'],
  verify: ['billing verify', 'billing verify --stripe --json'],
  run: ['billing run', 'billing run --dry-run'],
  daemon: ['billing daemon', 'billing daemon --schedule invoice="0 2 1 * *" --config billing.config.json', 'BILLING_CONFIG=/etc/billing/billing.config.json billing daemon'],
  status: ['billing status', 'billing status --strict --json', 'billing status --config /etc/billing/billing.config.json'],
  backup: ['billing backup --out billing.ndjson.gz', 'billing backup --tenant acme --out -'],
  restore: ['billing restore billing.ndjson.gz', 'billing restore acme.ndjson --tenant acme'],
  audit: ['billing audit --tenant acme --since 2026-03-01T00:00:00Z', 'billing audit --entity invoice --limit 20 --json'],
  retention: ['billing retention --older-than 18m --dry-run', 'billing retention --older-than 18m'],
  check: ['billing check acme API_CALL', 'billing check acme OCR_SCAN --quantity 10 --json'],
  aggregate: ['billing aggregate', 'billing aggregate --tenant acme --full'],
  report: [
    'billing report',
    'billing report --tenant acme --period previous',
    'billing report --exceeded --currency USD --sort amount --limit 20',
    "billing report --summary --tenant 'acme-*' --tz Europe/Berlin",
    'billing report --summary --plan pro --json',
    'billing report --period 2026-03 --format csv',
  ],
  history: ['billing history acme', 'billing history acme --limit 3 --json', 'billing history acme --tz America/New_York'],
  estimate: ['billing estimate acme', 'billing estimate acme --json'],
  stripe: ['billing stripe sync', 'billing stripe status'],
  'stripe sync': ['STRIPE_SECRET_KEY=sk_test_... billing stripe sync', 'billing stripe sync --dry-run --tenant acme'],
  'stripe retry': ['billing stripe retry', 'billing stripe retry --dead --tenant acme'],
  'stripe status': ['billing stripe status --json'],
  'stripe webhook': ['billing stripe webhook event.json --signature "$STRIPE_SIGNATURE"'],
  'stripe events': ['billing stripe events'],
  'stripe dunning': ['billing stripe dunning', 'billing stripe dunning --tenant acme --now 2026-04-04T00:00:00Z'],
  webhook: ['billing webhook add https://example.com/hooks --secret "$WEBHOOK_SECRET"', 'billing webhook deliveries --failed'],
  'webhook add': [
    'billing webhook add https://example.com/hooks --secret "$WEBHOOK_SECRET"',
    'billing webhook add https://example.com/billing --secret "$WEBHOOK_SECRET" --events invoice.paid,invoice.payment_failed',
  ],
  'webhook list': ['billing webhook list', 'billing webhook list --json'],
  'webhook remove': ['billing webhook remove we_0123456789abcdef'],
  'webhook deliveries': ['billing webhook deliveries', 'billing webhook deliveries --failed --json'],
  'webhook redeliver': ['billing webhook redeliver whd_0123456789abcdef01234567'],
  'webhook deliver': ['billing webhook deliver'],
  completion: [
    'source <(billing completion bash)',
    'billing completion zsh > "${fpath[1]}/_billing"',
    'billing completion fish > ~/.config/fish/completions/billing.fish',
  ],
  serve: ['BILLING_SERVICE_SECRETS=... billing serve --port 8080', 'billing serve --host 0.0.0.0 --rate-limit 200'],
};

/** A command's path from the program ("tenant import"). */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Add each registered command's Examples section to its help. */
export function addExamples(program: Command): void {
  const visit = (cmd: Command) => {
    for (const sub of cmd.commands) {
      const examples = EXAMPLES[commandPath(sub)];
      if (examples) sub.addHelpText('after', `\nExamples:\n${examples.map((e) => `  $ ${e}`).join('\n')}\n`);
      visit(sub);
    }
  };
  visit(program);
}
