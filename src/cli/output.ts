/** Plain output helpers: JSON for machines, aligned text for people. */

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function printLine(s = ''): void {
  process.stdout.write(s + '\n');
}

export function printErr(s: string): void {
  process.stderr.write(s + '\n');
}
