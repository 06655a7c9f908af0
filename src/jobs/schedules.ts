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
  // Continuous delivery within cron's resolution: every minute.
  webhooks: '* * * * *',
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

/** Why a cron expression is refused, or null when node-cron accepts it. */
function cronProblem(expr: string): string | null {
  const v = cron.validateDetailed(expr);
  if (v.valid) return null;
  const why = v.errors.map((e) => e.message).join('; ');
  return `not a valid cron expression: "${expr}"${why ? ` (${why})` : ''}`;
}

function checkExpression(job: string, expr: string, where: string): string {
  const problem = cronProblem(expr);
  if (problem !== null) bad(`${where}: schedule for "${job}" is ${problem}`);
  return expr;
}

const cronText = z
  .string({ error: 'must be a cron expression string, "off" or null' })
  .superRefine((expr, ctx) => {
    if (expr === 'off') return;
    const problem = cronProblem(expr);
    if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
  })
  .nullable()
  .optional();

const seconds = z
  .number({ error: 'must be a positive number of seconds' })
  .positive({ error: 'must be a positive number of seconds' })
  .optional();

/**
 * The `daemon` section of billing.config.json (DESIGN.md §10). Strict at every level, so a
 * misspelt setting or job is an error rather than a silently kept default.
 */
export const daemonSection = z.strictObject(
  {
    timezone: z
      .string({ error: 'must be an IANA time zone name such as "UTC" or "Europe/Paris"' })
      .superRefine((tz, ctx) => {
        try {
          new Intl.DateTimeFormat('en-US', { timeZone: tz });
        } catch {
          ctx.addIssue({ code: 'custom', message: `unknown time zone "${tz}"` });
        }
      })
      .optional(),
    schedules: z
      .strictObject(Object.fromEntries(JOB_NAMES.map((j) => [j, cronText])) as Record<JobName, typeof cronText>, {
        error: 'must be an object of job: cron expression',
      })
      .optional(),
    lockTtlSeconds: seconds,
    shutdownTimeoutSeconds: seconds,
    draftInvoices: z.boolean({ error: 'must be true or false' }).optional(),
  },
  { error: 'must be an object' },
);

/** A validated `daemon` section merged over the defaults. */
export function toDaemonConfig(section: z.infer<typeof daemonSection> | undefined): DaemonConfig {
  const config: DaemonConfig = { ...DEFAULT_DAEMON_CONFIG, schedules: { ...DEFAULT_SCHEDULES } };
  if (!section) return config;
  if (section.timezone !== undefined) config.timezone = section.timezone;
  if (section.lockTtlSeconds !== undefined) config.lockTtlMs = Math.round(section.lockTtlSeconds * 1000);
  if (section.shutdownTimeoutSeconds !== undefined) config.shutdownTimeoutMs = Math.round(section.shutdownTimeoutSeconds * 1000);
  if (section.draftInvoices !== undefined) config.draftInvoices = section.draftInvoices;
  for (const [job, expr] of Object.entries(section.schedules ?? {}) as Array<[JobName, string | null | undefined]>) {
    if (expr === undefined) continue;
    if (expr === null || expr === 'off') delete config.schedules[job];
    else config.schedules[job] = expr;
  }
  return config;
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
