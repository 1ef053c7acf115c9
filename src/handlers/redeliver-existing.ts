/**
 * The fast path of a redelivery that finds everything done: one read per
 * page of the outputs its runs would write, by their keys. A run whose
 * every output is already stored as the same request (signals) or the same
 * kind and params (directives) is deduplicated without a transaction;
 * anything else — a new output, a conflict, an invalid one — takes the write
 * path, which decides exactly as a live run would.
 */
import { canonicalJson } from '../core/canonical-json.ts';
import type { Tenant } from '../core/tenant.ts';
import type { Queryable } from '../db/client.ts';
import type { DirectiveDeps } from '../directives/deps.ts';
import { isoTimestamp } from '../signals/model.ts';
import { prepare, sameRequest, type StoredRequest } from '../signals/prepare.ts';
import type { EmitDeps } from '../signals/emit.ts';
import type { VerbContext } from '../signals/verb-context.ts';
import { derivedKey, type Outputs, type WrittenOutputs } from './outputs.ts';

export interface PendingRun {
  signalId: string;
  handler: string;
  outputs: Outputs;
  ctx: VerbContext;
}

export interface Stored {
  signals: Map<string, StoredRequest & { id: string }>;
  directives: Map<string, { id: string; kind: string; params: unknown }>;
}

export async function storedOutputs(db: Queryable, tenant: Tenant, runs: readonly PendingRun[]): Promise<Stored> {
  const signalKeys = runs.flatMap((run) => run.outputs.signals.map((output) => derivedKey('derived:', run.signalId, run.handler, output.key)));
  const directiveKeys = runs.flatMap((run) => run.outputs.directives.map((output) => derivedKey('', run.signalId, run.handler, output.key)));
  const [signals, directives] = await Promise.all([
    signalKeys.length === 0
      ? []
      : db<(StoredRequest & { id: string; dedupe_key: string })[]>`
          select id, dedupe_key, type, subject, payload_hash, ${db.unsafe(isoTimestamp('occurred_at'))} as occurred_at,
                 correlation_id, causation_id, schema_version, request_hash
            from ${db(`${tenant.schema}.signals`)} where dedupe_key = any(${signalKeys}::text[])`,
    directiveKeys.length === 0
      ? []
      : db<{ id: string; idempotency_key: string; kind: string; params: unknown }[]>`
          select id, idempotency_key, kind, params from ${db(`${tenant.schema}.directives`)} where idempotency_key = any(${directiveKeys}::text[])`,
  ]);
  return {
    signals: new Map(signals.map((row) => [row.dedupe_key, row])),
    directives: new Map(directives.map((row) => [row.idempotency_key, row])),
  };
}

/** The run's outputs as already stored, or null when any is new, different or invalid. */
export function alreadyDone(deps: { emit: EmitDeps; directives: DirectiveDeps }, run: PendingRun, stored: Stored): WrittenOutputs | null {
  const written: WrittenOutputs = { signals: [], directives: [] };
  try {
    for (const output of run.outputs.signals) {
      const dedupeKey = derivedKey('derived:', run.signalId, run.handler, output.key);
      const row = stored.signals.get(dedupeKey);
      if (!row) return null;
      const item = prepare(
        { ...run.ctx, system: true },
        { type: output.type, subject: output.subject ?? null, payload: output.payload, dedupe_key: dedupeKey, causation_id: run.signalId },
        deps.emit.maxPayloadBytes,
      );
      if (!sameRequest(row, item)) return null;
      written.signals.push({ id: row.id, type: output.type, subject: output.subject ?? null, dedupe_key: dedupeKey, created: false });
    }
    for (const output of run.outputs.directives) {
      const idempotencyKey = derivedKey('', run.signalId, run.handler, output.key);
      const row = stored.directives.get(idempotencyKey);
      if (!row || row.kind !== output.kind) return null;
      if (canonicalJson(row.params) !== canonicalJson(deps.directives.executors.parseParams(output.kind, output.params))) return null;
      written.directives.push({ id: row.id, kind: output.kind, idempotency_key: idempotencyKey, created: false });
    }
  } catch {
    // Invalid outputs fail on the write path, with its error.
    return null;
  }
  return written;
}
