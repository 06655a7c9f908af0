import { readFileSync } from 'node:fs';
import cron from 'node-cron';
import { z } from 'zod';
import { BillingError } from '../domain/errors.js';
import { JOB_NAMES, type JobName } from './stages.js';

/** Daemon schedules (DESIGN.md §10): defaults, the config file, validation, next run times. */

export const DEFAULT_SCHEDULES: Record<JobName, string> = {
  aggregate: '0 * * * *',
  overage: '0 * * * *',
  invoice: '15 0 * * *',
  'stripe-sync': '30 0 * * *',
  'stripe-retry': '0 */6 * * *',
  dunning: '0 * * * *',
};

export interface DaemonConfig {
  timezone: string;
  /** Job → cron expression; a job set to null (or "off") in the config is not scheduled. */
  schedules: Partial<Record<JobName, string>>;
  lockTtlMs: number;
  shutdownTimeoutMs: number;
  /** Leave generated invoices as drafts (an operator finalizes them) instead of open. */
  draftInvoices: boolean;
}

export const DEFAULT_DAEMON_CONFIG: DaemonConfig = {
  timezone: 'UTC',
  schedules: { ...DEFAULT_SCHEDULES },
  lockTtlMs: 60_000,
  shutdownTimeoutMs: 60_000,
  draftInvoices: false,
};

function bad(message: string): never {
  throw new BillingError('usage', message);
}

function checkJob(job: string, where: string): JobName {
  if (!(JOB_NAMES as readonly string[]).includes(job)) {
    bad(`${where}: unknown job "${job}" (jobs: ${JOB_NAMES.join(', ')})`);
  }
  return job as JobName;
}

function checkExpression(job: string, expr: unknown, where: string): string {
  if (typeof expr !== 'string') bad(`${where}: schedule for "${job}" must be a cron expression string`);
  const v = cron.validateDetailed(expr);
  if (!v.valid) {
    const why = v.errors.map((e) => e.message).join('; ');
    bad(`${where}: schedule for "${job}" is not a valid cron expression: "${expr}"${why ? ` (${why})` : ''}`);
  }
  return expr;
}

function checkTimezone(tz: unknown, where: string): string {
  if (typeof tz !== 'string' || tz === '') bad(`${where}: timezone must be an IANA name such as "UTC" or "Europe/Paris"`);
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
  } catch {
    bad(`${where}: unknown timezone "${tz}"`);
  }
  return tz;
}

function positiveSeconds(v: unknown, name: string, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) bad(`${where}: ${name} must be a positive number of seconds`);
  return Math.round(v * 1000);
}

const SETTINGS = ['timezone', 'schedules', 'lockTtlSeconds', 'shutdownTimeoutSeconds', 'draftInvoices'] as const;

// Unknown keys are an error at every level, so a misspelt setting never silently keeps its
// default; the values' own rules and messages are the checks below.
const FILE_KEYS = z.strictObject({ daemon: z.unknown().optional() });
const DAEMON_KEYS = z.strictObject(Object.fromEntries(SETTINGS.map((k) => [k, z.unknown().optional()])));

/** One line naming the first unknown key by its path in the file, e.g. `daemon.lockTtl`. */
function refuseUnknownKeys(schema: z.ZodType, value: unknown, at: string[], allowed: readonly string[], where: string): void {
  const issue = schema.safeParse(value).error?.issues.find((i) => i.code === 'unrecognized_keys');
  if (issue?.code === 'unrecognized_keys') bad(`${where}: unknown key "${[...at, issue.keys[0]].join('.')}" (use ${allowed.join(', ')})`);
}

/**
 * The daemon section of a config object (`{ "daemon": { "timezone", "schedules",
 * "lockTtlSeconds", "shutdownTimeoutSeconds", "draftInvoices" } }`) merged over the defaults.
 */
export function parseDaemonConfig(raw: unknown, where = 'config'): DaemonConfig {
  const config: DaemonConfig = { ...DEFAULT_DAEMON_CONFIG, schedules: { ...DEFAULT_SCHEDULES } };
  if (raw === undefined || raw === null) return config;
  if (typeof raw !== 'object' || Array.isArray(raw)) bad(`${where}: expected a JSON object`);
  refuseUnknownKeys(FILE_KEYS, raw, [], ['daemon'], where);
  const section = (raw as Record<string, unknown>).daemon;
  if (section === undefined) return config;
  if (!section || typeof section !== 'object' || Array.isArray(section)) bad(`${where}: "daemon" must be an object`);
  refuseUnknownKeys(DAEMON_KEYS, section, ['daemon'], SETTINGS, where);
  const d = section as Record<string, unknown>;
  if (d.draftInvoices !== undefined) {
    if (typeof d.draftInvoices !== 'boolean') bad(`${where}: draftInvoices must be true or false`);
    config.draftInvoices = d.draftInvoices;
  }
  if (d.timezone !== undefined) config.timezone = checkTimezone(d.timezone, where);
  if (d.lockTtlSeconds !== undefined) config.lockTtlMs = positiveSeconds(d.lockTtlSeconds, 'lockTtlSeconds', where);
  if (d.shutdownTimeoutSeconds !== undefined) {
    config.shutdownTimeoutMs = positiveSeconds(d.shutdownTimeoutSeconds, 'shutdownTimeoutSeconds', where);
  }
  if (d.schedules !== undefined) {
    if (!d.schedules || typeof d.schedules !== 'object' || Array.isArray(d.schedules)) bad(`${where}: "schedules" must be an object`);
    for (const [job, expr] of Object.entries(d.schedules as Record<string, unknown>)) {
      const name = checkJob(job, where);
      if (expr === null || expr === 'off') delete config.schedules[name];
      else config.schedules[name] = checkExpression(job, expr, where);
    }
  }
  return config;
}

/** Read and validate a config file; `required` false tolerates a missing default file. */
export function loadDaemonConfig(file: string, required: boolean): DaemonConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return parseDaemonConfig(undefined);
    bad(`cannot read config ${file}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    bad(`config ${file} is not valid JSON: ${(e as Error).message}`);
  }
  return parseDaemonConfig(raw, file);
}

/** Apply `--schedule job=CRON` overrides (CRON "off" disables the job). */
export function applyScheduleFlags(config: DaemonConfig, flags: string[]): DaemonConfig {
  const out: DaemonConfig = { ...config, schedules: { ...config.schedules } };
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    if (eq <= 0) bad(`--schedule "${flag}" must look like job=CRON, e.g. aggregate="*/5 * * * *"`);
    const job = checkJob(flag.slice(0, eq).trim(), '--schedule');
    const expr = flag.slice(eq + 1).trim();
    if (expr === 'off') delete out.schedules[job];
    else out.schedules[job] = checkExpression(job, expr, '--schedule');
  }
  return out;
}

interface LocalParts {
  hour: number;
  minute: number;
  second: number;
}

function partsReader(timezone: string): (t: number) => LocalParts {
  if (timezone === 'UTC' || timezone === 'Etc/UTC') {
    return (t) => {
      const d = new Date(t);
      return { hour: d.getUTCHours(), minute: d.getUTCMinutes(), second: d.getUTCSeconds() };
    };
  }
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone: timezone,
    hourCycle: 'h23',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  });
  return (t) => {
    const p = Object.fromEntries(fmt.formatToParts(new Date(t)).map((x) => [x.type, x.value]));
    return { hour: Number(p.hour) % 24, minute: Number(p.minute), second: Number(p.second) };
  };
}

/**
 * The first instant strictly after `after` matching the expression in the timezone, or
 * null if none within about a year. node-cron only answers this for its own wall clock;
 * `billing status --now` needs it for any instant. Walks hour → minute → second using the
 * parsed fields and lets node-cron's matcher decide the day (L, W, #n tokens and all).
 */
export function nextRunAfter(expression: string, timezone: string, after: number): number | null {
  const fields = cron.parse(expression);
  const hours = new Set(fields.hour);
  const minutes = new Set(fields.minute);
  const seconds = new Set(fields.second);
  const task = cron.createTask(expression, () => undefined, { timezone });
  try {
    const parts = partsReader(timezone);
    let t = Math.floor(after / 1000) * 1000 + 1000;
    const limit = after + 400 * 86_400_000;
    while (t <= limit) {
      const p = parts(t);
      if (!hours.has(p.hour)) t += (3600 - p.minute * 60 - p.second) * 1000;
      else if (!minutes.has(p.minute)) t += (60 - p.second) * 1000;
      else if (!seconds.has(p.second)) t += 1000;
      else if (task.match(new Date(t))) return t;
      else t += (3600 - p.minute * 60 - p.second) * 1000; // wrong day: try the next hour
    }
    return null;
  } finally {
    void task.destroy();
  }
}
