import type { Knex } from 'knex';
import type { FeatureType } from '../domain/catalog.js';
import type { KnownIds } from './validate.js';

type Q = Knex | Knex.Transaction;

/** Every tenant id and feature: loaded once per ingest run, never per row. */
export async function loadKnownIds(q: Q): Promise<KnownIds> {
  const [tenants, features] = await Promise.all([q('tenants').select('id'), q('features').select('key', 'type')]);
  return {
    tenants: new Set(tenants.map((r) => String(r.id))),
    features: new Map(features.map((r) => [String(r.key), r.type as FeatureType])),
  };
}

/** Just the tenants and features a handful of events mention (record / HTTP). */
export async function loadKnownIdsFor(q: Q, tenantIds: string[], featureKeys: string[]): Promise<KnownIds> {
  const [tenants, features] = await Promise.all([
    tenantIds.length ? q('tenants').whereIn('id', tenantIds).select('id') : [],
    featureKeys.length ? q('features').whereIn('key', featureKeys).select('key', 'type') : [],
  ]);
  return {
    tenants: new Set(tenants.map((r: { id: unknown }) => String(r.id))),
    features: new Map(features.map((r: { key: unknown; type: unknown }) => [String(r.key), r.type as FeatureType])),
  };
}
