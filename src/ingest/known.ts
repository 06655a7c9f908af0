import type { Knex } from 'knex';
import type { FeatureType } from '../domain/catalog.js';
import type { KnownIds } from './validate.js';

type Q = Knex | Knex.Transaction;

/** Every tenant id and feature: loaded once per ingest run, never per row. */
export async function loadKnownIds(q: Q): Promise<KnownIds> {
  const [tenants, features] = await Promise.all([q('tenants').select('id', 'created_at'), q('features').select('key', 'type', 'aggregation')]);
  return {
    tenants: new Map(tenants.map((r) => [String(r.id), Number(r.created_at)])),
    features: new Map(features.map((r) => [String(r.key), r.type as FeatureType])),
    weighted: weightedKeys(features),
  };
}

/** Just the tenants and features a handful of events mention (record / HTTP). */
export async function loadKnownIdsFor(q: Q, tenantIds: string[], featureKeys: string[]): Promise<KnownIds> {
  const [tenants, features] = await Promise.all([
    tenantIds.length ? q('tenants').whereIn('id', tenantIds).select('id', 'created_at') : [],
    featureKeys.length ? q('features').whereIn('key', featureKeys).select('key', 'type', 'aggregation') : [],
  ]);
  return {
    tenants: new Map(tenants.map((r: { id: unknown; created_at: unknown }) => [String(r.id), Number(r.created_at)])),
    features: new Map(features.map((r: { key: unknown; type: unknown }) => [String(r.key), r.type as FeatureType])),
    weighted: weightedKeys(features),
  };
}

function weightedKeys(features: Array<{ key: unknown; aggregation: unknown }>): Set<string> {
  return new Set(features.filter((r) => r.aggregation === 'weighted_sum').map((r) => String(r.key)));
}
