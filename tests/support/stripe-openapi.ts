import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { FormObject, FormValue } from './stripe-form.js';

/**
 * Validates form-encoded Stripe request bodies against the operation schemas of
 * `openapi-subset.json`, the way the real API answers: unknown parameters, missing required
 * ones, wrong types and values outside an enum are a 400 naming the parameter.
 */

type Schema = {
  type?: string;
  format?: string;
  enum?: string[];
  maxLength?: number;
  required?: string[];
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  items?: Schema;
  anyOf?: Schema[];
  $ref?: string;
  'x-stripeBypassValidation'?: boolean;
};

interface Operation {
  parameters?: Array<{ name: string; in: string; required?: boolean }>;
  requestBody?: { content?: Record<string, { schema?: Schema }>; required?: boolean };
}

interface Spec {
  paths: Record<string, Record<string, Operation>>;
  schemas?: Record<string, Schema>;
}

export interface ParamError {
  param: string;
  message: string;
  code: string;
}

export interface MatchedOperation {
  template: string;
  operation: Operation;
  pathParams: Record<string, string>;
}

export class OpenApiValidator {
  private readonly spec: Spec;

  private constructor(spec: Spec) {
    this.spec = spec;
  }

  /** Loads `openapi-subset.json` from dir; null when the file is absent. */
  static load(dir: string | null): OpenApiValidator | null {
    if (!dir) return null;
    const file = path.join(dir, 'openapi-subset.json');
    if (!existsSync(file)) return null;
    return new OpenApiValidator(JSON.parse(readFileSync(file, 'utf8')) as Spec);
  }

  /** The operation for a concrete path; literal segments win over `{param}` templates. */
  match(method: string, urlPath: string): MatchedOperation | null {
    const segs = urlPath.split('/').filter(Boolean);
    let best: { m: MatchedOperation; literals: number } | null = null;
    for (const [template, ops] of Object.entries(this.spec.paths)) {
      const op = ops[method.toLowerCase()];
      if (!op) continue;
      const tsegs = template.split('/').filter(Boolean);
      if (tsegs.length !== segs.length) continue;
      const params: Record<string, string> = {};
      let literals = 0;
      let ok = true;
      for (let i = 0; i < tsegs.length && ok; i++) {
        const p = /^\{(.+)\}$/.exec(tsegs[i]);
        if (p) params[p[1]] = decodeURIComponent(segs[i]);
        else if (tsegs[i] === segs[i]) literals++;
        else ok = false;
      }
      if (ok && (!best || literals > best.literals)) best = { m: { template, operation: op, pathParams: params }, literals };
    }
    return best?.m ?? null;
  }

  /** Validate a POST body against the operation's form schema. */
  validateBody(op: Operation, body: FormObject): ParamError | null {
    const schema = op.requestBody?.content?.['application/x-www-form-urlencoded']?.schema;
    if (!schema) return null;
    return this.validateObject(schema, body, '');
  }

  /** Validate query parameters of a GET: unknown names and simple types. */
  validateQuery(op: Operation, query: FormObject): ParamError | null {
    const known = new Map((op.parameters ?? []).filter((p) => p.in === 'query').map((p) => [p.name, p]));
    for (const key of Object.keys(query)) {
      if (!known.has(key)) return { param: key, message: `Received unknown parameter: ${key}`, code: 'parameter_unknown' };
    }
    for (const [name, p] of known) {
      if (p.required && query[name] === undefined) {
        return { param: name, message: `Missing required param: ${name}.`, code: 'parameter_missing' };
      }
    }
    return null;
  }

  private resolve(s: Schema): Schema {
    if (!s.$ref) return s;
    const name = s.$ref.replace('#/components/schemas/', '');
    return this.spec.schemas?.[name] ?? {};
  }

  private validateObject(schemaIn: Schema, value: FormObject, prefix: string): ParamError | null {
    const schema = this.resolve(schemaIn);
    const name = (k: string) => (prefix ? `${prefix}[${k}]` : k);
    for (const req of schema.required ?? []) {
      if (value[req] === undefined) return { param: name(req), message: `Missing required param: ${name(req)}.`, code: 'parameter_missing' };
    }
    for (const [k, v] of Object.entries(value)) {
      const prop = schema.properties?.[k];
      if (prop) {
        const err = this.validateValue(prop, v, name(k));
        if (err) return err;
        continue;
      }
      const extra = schema.additionalProperties;
      // Stripe rejects unknown nested parameters even where the spec leaves this unsaid.
      if (extra === undefined ? schema.properties !== undefined : extra === false) {
        return { param: name(k), message: `Received unknown parameter: ${name(k)}`, code: 'parameter_unknown' };
      }
      if (typeof extra === 'object') {
        const err = this.validateValue(extra, v, name(k));
        if (err) return err;
      }
    }
    return null;
  }

  private validateValue(schemaIn: Schema, value: FormValue, param: string): ParamError | null {
    const schema = this.resolve(schemaIn);
    if (schema.anyOf) {
      let first: ParamError | null = null;
      for (const branch of schema.anyOf) {
        const err = this.validateValue(branch, value, param);
        if (!err) return null;
        // Report the branch whose shape matches what was sent (object vs scalar).
        const b = this.resolve(branch);
        const shapeMatches = (typeof value === 'object') === (b.type === 'object' || b.type === 'array');
        if (!first || shapeMatches) first = err;
      }
      return first;
    }
    const invalid = (what: string): ParamError => ({ param, message: `Invalid ${what}: ${typeof value === 'string' ? value : JSON.stringify(value)}`, code: 'parameter_invalid' });
    switch (schema.type) {
      case 'object':
        if (typeof value !== 'object') return { param, message: `Invalid object: ${param} must be a hash`, code: 'parameter_invalid' };
        return this.validateObject(schema, value, param);
      case 'array': {
        if (typeof value !== 'object') return { param, message: `Invalid array: ${param} must be an array`, code: 'parameter_invalid' };
        const keys = Object.keys(value);
        if (!keys.every((k) => /^\d+$/.test(k))) return { param, message: `Invalid array: ${param} must be an array`, code: 'parameter_invalid' };
        for (const k of keys) {
          const err = schema.items ? this.validateValue(schema.items, value[k], `${param}[${k}]`) : null;
          if (err) return err;
        }
        return null;
      }
      case 'integer':
        return typeof value === 'string' && /^-?\d+$/.test(value) ? null : { ...invalid('integer'), code: 'parameter_invalid_integer' };
      case 'number':
        return typeof value === 'string' && /^-?(\d+\.?\d*|\.\d+)$/.test(value) ? null : invalid('number');
      case 'boolean':
        return value === 'true' || value === 'false' ? null : invalid('boolean');
      case 'string': {
        if (typeof value !== 'string') return { param, message: `Invalid string: ${param} must be a string`, code: 'parameter_invalid_string' };
        if (schema.enum && !schema['x-stripeBypassValidation'] && !schema.enum.includes(value)) {
          return { param, message: `Invalid ${param}: must be one of ${schema.enum.join(', ')}`, code: 'parameter_invalid' };
        }
        if (schema.maxLength !== undefined && value.length > schema.maxLength) {
          return { param, message: `Invalid string: ${param} must be at most ${schema.maxLength} characters`, code: 'parameter_invalid_string_too_long' };
        }
        return null;
      }
      default:
        return null;
    }
  }
}
