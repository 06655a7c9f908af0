import { Argument, type Command } from 'commander';
import { printLine } from '../output.js';

export function register(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script for billing (commands, subcommands, options)')
    .addArgument(new Argument('<shell>', 'bash, zsh or fish').choices(['bash', 'zsh', 'fish']))
    .action(async (shell: 'bash' | 'zsh' | 'fish') => {
      // The invoked command alone is registered; the script needs every command.
      const { buildProgram } = await import('../main.js');
      const { completionScript } = await import('../completion.js');
      printLine(completionScript(await buildProgram([]), shell).trimEnd());
    });
}
