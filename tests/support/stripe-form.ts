/**
 * Stripe-style form decoding: `metadata[tenant_id]=a&period[start]=1&expand[0]=x` becomes
 * `{ metadata: { tenant_id: 'a' }, period: { start: '1' }, expand: { '0': 'x' } }`. Every leaf
 * stays a string, as on the wire; the OpenAPI validator decides what is an integer or an array.
 */
export type FormValue = string | FormObject;
export interface FormObject {
  [key: string]: FormValue;
}

function decode(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, ' '));
}

/** Split `a[b][c]` into ['a', 'b', 'c'] (`a[]` gives an empty segment, appended as next index). */
function keyPath(key: string): string[] {
  const m = /^([^[\]]*)((?:\[[^\]]*\])*)$/.exec(key);
  if (!m) return [key];
  const rest = [...m[2].matchAll(/\[([^\]]*)\]/g)].map((x) => x[1]);
  return [m[1], ...rest];
}

export function parseForm(body: string): FormObject {
  const out: FormObject = {};
  if (!body) return out;
  for (const pair of body.split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const rawKey = decode(eq < 0 ? pair : pair.slice(0, eq));
    const value = eq < 0 ? '' : decode(pair.slice(eq + 1));
    const path = keyPath(rawKey);
    let node: FormObject = out;
    for (let i = 0; i < path.length; i++) {
      let seg = path[i];
      if (seg === '') seg = String(Object.keys(node).length);
      if (i === path.length - 1) {
        node[seg] = value;
      } else {
        const next = node[seg];
        if (typeof next !== 'object') node[seg] = {};
        node = node[seg] as FormObject;
      }
    }
  }
  return out;
}

/** Key-sorted JSON: two requests carry "the same parameters" when these strings are equal. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(',')}}`;
}
