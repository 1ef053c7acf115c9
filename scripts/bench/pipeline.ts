/**
 * Full-pipeline throughput, shared by `fanout` and `hooks`: signals sent in,
 * timed until as many directives of a kind have succeeded in the org. The
 * rate covers the whole path (ingest, dispatch, handler, policy, execution),
 * with a worker already running.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sql } from '../../src/db/client.ts';

export interface PipelineResult {
  signals: number;
  seconds: number;
  /** When the last signal was accepted, from the start. */
  sent_seconds: number;
  signals_to_executed_directives_per_s: number;
}

export const PIPELINE_SIGNALS = Number(process.env.BENCH_PIPELINE_SIGNALS ?? 5000);

async function succeeded(sql: Sql, schema: string, kind: string): Promise<number> {
  const [row] = await sql<{ n: number }[]>`select count(*)::int as n from ${sql(schema)}.directives where status = 'succeeded' and kind = ${kind}`;
  return row!.n;
}

/** Runs `send` (which sends `signals` signals), then waits until `signals` more `kind` directives have succeeded. */
export async function measurePipeline(
  { sql, schema, kind, signals }: { sql: Sql; schema: string; kind: string; signals: number },
  send: () => Promise<void>,
): Promise<PipelineResult> {
  const before = await succeeded(sql, schema, kind);
  const started = performance.now();
  await send();
  const sent = performance.now();
  const deadline = Date.now() + 600_000;
  while ((await succeeded(sql, schema, kind)) - before < signals) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${signals} ${kind} directives to execute`);
    await sleep(50);
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    signals,
    seconds: +seconds.toFixed(1),
    sent_seconds: +((sent - started) / 1000).toFixed(1),
    signals_to_executed_directives_per_s: Math.round(signals / seconds),
  };
}

/** The built-in handler pipeline: batch emits of `shop.order.placed`, each proposing one allowed `noop.record` (the `proposer` bench handler). */
export function builtinPipeline(
  { sql, serverUrl, org, headers, signals = PIPELINE_SIGNALS }: { sql: Sql; serverUrl: string; org: string; headers: Record<string, string>; signals?: number },
): Promise<PipelineResult> {
  return measurePipeline({ sql, schema: `org_${org}`, kind: 'noop.record', signals }, async () => {
    for (let done = 0; done < signals; done += 500) {
      const size = Math.min(500, signals - done);
      const response = await fetch(`${serverUrl}/v1/orgs/${org}/signals/batch`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ signals: Array.from({ length: size }, (_, i) => ({ type: 'shop.order.placed', subject: `customer:${(done + i) % 100}`, payload: { phase: 'pipeline' } })) }),
      });
      if (response.status !== 200) throw new Error(`batch answered ${response.status}`);
      await response.arrayBuffer();
    }
  });
}
