import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/billing', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  db?: string;
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  now?: string;
  cwd?: string;
}

function buildArgs(args: string[], opts: CliOptions): string[] {
  const out = [...args];
  if (opts.db) out.push('--db', opts.db);
  if (opts.now) out.push('--now', opts.now);
  return out;
}

function cleanEnv(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...extra };
  // The caller's shell must not choose the database; a test may (precedence tests).
  if (!extra?.BILLING_DATABASE_URL) delete env.BILLING_DATABASE_URL;
  if (!extra?.DATABASE_URL) delete env.DATABASE_URL;
  if (!extra?.BILLING_CONFIG) delete env.BILLING_CONFIG;
  if (!extra?.BILLING_NOW) delete env.BILLING_NOW;
  return env;
}

/** Spawn the real bin/billing (the compiled CLI) and collect its output. */
export function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...buildArgs(args, opts)], {
      env: cleanEnv(opts.env),
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

export function runCliSync(args: string[], opts: CliOptions = {}): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...buildArgs(args, opts)], {
    env: cleanEnv(opts.env),
    cwd: opts.cwd,
    input: opts.input,
    encoding: 'utf8',
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
