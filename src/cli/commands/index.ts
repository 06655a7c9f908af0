import type { Command } from 'commander';
import { register as migrate } from './migrate.js';

// Each command file defines its options cheaply and lazy-imports its core module, so that
// `billing check` does not pay for stripe, ink or csv-parse.
const commands: Array<(program: Command) => void> = [migrate];

export function registerAll(program: Command): void {
  for (const register of commands) register(program);
}
