/**
 * JSON for ingest: numbers keep their text where a double would change them, and nesting is
 * bounded before anything recurses into a value.
 *
 * A line is scanned once for its depth and for numbers a double cannot hold as written (more
 * than 15 digits, or an exponent). Most lines have neither and go to JSON.parse; the others
 * go through a small parser that returns those numbers as `JsonNumber` (their text).
 */

/** Deeper JSON is refused: the values are walked recursively (checks, serialisation). */
export const MAX_JSON_DEPTH = 64;

/** A JSON number kept as written, because a double would round or overflow it. */
export class JsonNumber {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
  /** In messages (JSON.stringify): the text as a string. stringifyJson writes it as a number. */
  toJSON(): string {
    return this.text;
  }
}

export class JsonSyntaxError extends Error {}
/** Valid or not, the text nests deeper than MAX_JSON_DEPTH. */
export class JsonTooDeep extends JsonSyntaxError {}

export type Scan = { depth: number; exact: boolean };

/**
 * Nesting depth of `s` (stopping as soon as it passes `limit`), and whether every number in it
 * survives a double unchanged. Assumes nothing about validity: JSON.parse or `parseJson` judge it.
 */
export function scanJson(s: string, limit = MAX_JSON_DEPTH): Scan {
  let depth = 0;
  let max = 0;
  let exact = true;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === 34 /* " */) {
      for (i++; i < n; i++) {
        const d = s.charCodeAt(i);
        if (d === 92 /* \ */) i++;
        else if (d === 34) break;
      }
    } else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return { depth: max, exact };
      }
    } else if (c === 125 /* } */ || c === 93 /* ] */) {
      depth--;
    } else if (c === 45 /* - */ || (c >= 48 && c <= 57)) {
      let digits = 0;
      let j = i;
      for (; j < n; j++) {
        const d = s.charCodeAt(j);
        if (d >= 48 && d <= 57) digits++;
        else if (d === 101 || d === 69 /* e E */) exact = false;
        else if (d !== 45 && d !== 43 && d !== 46 /* - + . */) break;
      }
      if (digits > 15) exact = false;
      i = j - 1;
    }
  }
  return { depth: max, exact };
}

/** True when `v` (a parsed JSON value or a caller's object) nests deeper than `limit`; no recursion. */
export function nestsDeeper(v: unknown, limit = MAX_JSON_DEPTH): boolean {
  const stack: Array<[unknown, number]> = [[v, 1]];
  while (stack.length) {
    const [x, d] = stack.pop()!;
    if (typeof x !== 'object' || x === null || x instanceof JsonNumber) continue;
    if (d > limit) return true;
    for (const y of Object.values(x)) if (typeof y === 'object' && y !== null) stack.push([y, d + 1]);
  }
  return false;
}

/**
 * Parse JSON text, keeping inexact numbers as JsonNumber. Throws JsonSyntaxError (with the
 * reason) for invalid JSON or nesting deeper than MAX_JSON_DEPTH.
 */
export function parseJson(s: string): unknown {
  const scan = scanJson(s);
  if (scan.depth > MAX_JSON_DEPTH) throw new JsonTooDeep(`nests deeper than ${MAX_JSON_DEPTH} levels`);
  if (scan.exact) {
    try {
      return JSON.parse(s);
    } catch (e) {
      throw new JsonSyntaxError((e as Error).message);
    }
  }
  return new Parser(s).document();
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

class Parser {
  private i = 0;
  constructor(private readonly s: string) {}

  document(): unknown {
    const v = this.value();
    this.ws();
    if (this.i < this.s.length) this.fail();
    return v;
  }

  private fail(): never {
    throw new JsonSyntaxError(
      this.i < this.s.length ? `Unexpected token ${JSON.stringify(this.s[this.i])} at position ${this.i}` : 'Unexpected end of JSON input',
    );
  }

  private ws(): void {
    const s = this.s;
    for (;;) {
      const c = s.charCodeAt(this.i);
      if (c === 32 || c === 9 || c === 10 || c === 13) this.i++;
      else return;
    }
  }

  private value(): unknown {
    this.ws();
    const c = this.s[this.i];
    if (c === '{') return this.object();
    if (c === '[') return this.array();
    if (c === '"') return this.string();
    if (c === '-' || (c >= '0' && c <= '9')) return this.number();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length;
        return v;
      }
    }
    return this.fail();
  }

  private object(): Record<string, unknown> {
    const obj: Record<string, unknown> = {};
    this.i++;
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return obj;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail();
      const key = this.string();
      this.ws();
      if (this.s[this.i] !== ':') this.fail();
      this.i++;
      // An own property, as JSON.parse makes it: assigning "__proto__" would set the prototype.
      Object.defineProperty(obj, key, { value: this.value(), writable: true, enumerable: true, configurable: true });
      this.ws();
      const c = this.s[this.i++];
      if (c === '}') return obj;
      if (c !== ',') {
        this.i--;
        this.fail();
      }
    }
  }

  private array(): unknown[] {
    const arr: unknown[] = [];
    this.i++;
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return arr;
    }
    for (;;) {
      arr.push(this.value());
      this.ws();
      const c = this.s[this.i++];
      if (c === ']') return arr;
      if (c !== ',') {
        this.i--;
        this.fail();
      }
    }
  }

  private string(): string {
    const s = this.s;
    const start = this.i;
    let j = start + 1;
    for (; j < s.length; j++) {
      const c = s.charCodeAt(j);
      if (c === 92) j++;
      else if (c === 34) break;
    }
    if (j >= s.length) {
      this.i = s.length;
      this.fail();
    }
    this.i = j + 1;
    try {
      return JSON.parse(s.slice(start, j + 1)) as string; // escapes and control characters as JSON.parse has them
    } catch (e) {
      throw new JsonSyntaxError(`${(e as Error).message} in the string at position ${start}`);
    }
  }

  private number(): number | JsonNumber {
    NUMBER.lastIndex = this.i;
    const m = NUMBER.exec(this.s);
    if (!m) return this.fail();
    this.i += m[0].length;
    const text = m[0];
    return isExact(text) ? Number(text) : new JsonNumber(text);
  }
}

function isExact(text: string): boolean {
  if (/[eE]/.test(text)) return false;
  let digits = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) digits++;
  }
  return digits <= 15;
}

/** JSON text of a parsed value, JsonNumbers as written. Depth is bounded by the parse. */
export function stringifyJson(v: unknown): string {
  if (v instanceof JsonNumber) return v.text;
  if (typeof v !== 'object' || v === null) return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : stringifyJson(x))).join(',')}]`;
  const parts: string[] = [];
  for (const [k, x] of Object.entries(v)) if (x !== undefined) parts.push(`${JSON.stringify(k)}:${stringifyJson(x)}`);
  return `{${parts.join(',')}}`;
}

/** Whether any JsonNumber is inside `v` (then JSON.stringify would not write it as given). */
export function hasJsonNumber(v: unknown): boolean {
  if (v instanceof JsonNumber) return true;
  if (typeof v !== 'object' || v === null) return false;
  return Object.values(v).some(hasJsonNumber);
}
