import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { BillingError, ExitCode } from '../domain/errors.js';
import { databaseErrorMessage } from '../storage/sql.js';
import { redactUrl } from '../storage/url.js';
import { invokedCommand, registerCommands } from './commands/index.js';
import { addExamples } from './examples.js';

/** package.json sits three levels up from both dist/src/cli/main.js and the bundle's main.js. */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The program with the invoked command registered (or all of them, for help). */
export async function buildProgram(args: string[] = []): Promise<Command> {
  const program = new Command('billing')
    .description('Usage metering and billing engine: ingest → aggregate → overage → invoice → stripe')
    .option('--db <url>', 'database URL (sqlite:PATH or postgres://...; env BILLING_DATABASE_URL, DATABASE_URL; config databaseUrl)')
    .option('--config <file>', 'config file (env BILLING_CONFIG; default ./billing.config.json when present)')
    .option('--now <iso>', 'override the clock (env BILLING_NOW)')
    .option('--json', 'machine-readable JSON output')
    .option('--debug', 'print stack traces on errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  // Only before a command: commander would otherwise take a command's own --version (catalog show).
  if (invokedCommand(args) === undefined) program.version(packageVersion(), '-V, --version', 'print the version and exit');
  // Subcommand help lists --db, --now, --json too (they are accepted after any command);
  // set before registering, as commands copy their parent's help settings when created.
  program.configureHelp({ showGlobalOptions: true });
  // commander's own errors (unknown option, missing argument) get the one prefix all errors use.
  program.configureOutput({ outputError: (text, write) => write(text.replace(/^error: /, 'billing: ')) });
  await registerCommands(program, args);
  addExamples(program);
  return program;
}

/** One handler maps every error to one stderr line and an exit code. */
export function reportError(e: unknown, debug: boolean): number {
  if (e instanceof CommanderError) {
    // commander already printed its message
    return e.exitCode === 0 ? ExitCode.Ok : ExitCode.Usage;
  }
  if (e instanceof BillingError) {
    process.stderr.write(`billing: ${redactUrl(e.message)}${e.hint ? ` (${e.hint})` : ''}\n`);
    if (debug && e.stack) process.stderr.write(e.stack + '\n');
    return e.exitCode;
  }
  const err = e as Error;
  if (String((e as { code?: unknown })?.code ?? '').startsWith('SQLITE_READONLY')) {
    process.stderr.write('billing: the database is read-only (sqlite:PATH?mode=ro, or a file or directory this user cannot write): this command writes to it\n');
    if (debug && err?.stack) process.stderr.write(err.stack + '\n');
    return ExitCode.Failure;
  }
  const dbMessage = databaseErrorMessage(e);
  if (dbMessage !== null) {
    process.stderr.write(`billing: database error: ${redactUrl(dbMessage.split('\n')[0])}${debug ? '' : ' (run with --debug for details)'}\n`);
    if (debug && err?.stack) process.stderr.write(err.stack + '\n');
    return ExitCode.Failure;
  }
  process.stderr.write(`billing: unexpected error: ${redactUrl(String(err?.message ?? e).split('\n')[0])}${debug ? '' : ' (run with --debug for details)'}\n`);
  if (debug && err?.stack) process.stderr.write(err.stack + '\n');
  return ExitCode.Failure;
}

export async function main(argv: string[]): Promise<void> {
  // `billing report | head`: the reader went away; stop quietly like other Unix tools.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? ExitCode.Ok);
      throw e;
    });
  }
  const debug = argv.includes('--debug');
  try {
    const program = await buildProgram(argv.slice(2));
    await program.parseAsync(argv);
    if (process.exitCode === undefined) process.exitCode = ExitCode.Ok;
  } catch (e) {
    process.exitCode = reportError(e, debug);
  }
}
