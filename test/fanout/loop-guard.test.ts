/**
 * The loop guard: a handler that re-emits its own trigger would run forever;
 * the chain is stopped at the causation depth limit and the stop is recorded
 * as a failed execution, never dropped silently.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Handler } from '../../src/handlers/registry.ts';
import { listExecutions } from '../../src/executions/read.ts';
import { emit } from '../../src/signals/emit.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

/** Answers every ping with another ping, under a fixed local key. */
const echo: Handler = {
  id: 'test.echo',
  on: ['loop.ping'],
  handle(_signal, tools) {
    tools.emit({ type: 'loop.ping', subject: 'loop:1', payload: { again: true }, key: 'again' });
  },
};

/** Watches the same signals but produces nothing, so the guard has nothing to stop. */
const observer: Handler = {
  id: 'test.observer',
  on: ['loop.ping'],
  handle() {},
};

interface Generation {
  id: string;
  causation_id: string | null;
  causation_depth: number;
}

function loopSuite(name: string, env: Record<string, string>, limit: number) {
  describe(name, () => {
    let t: TestApp;
    let org: Tenant;

    beforeAll(async () => {
      t = await createTestApp({ env, handlers: [echo, observer] });
      org = await t.createOrg('loop');
      await t.startWorker();
    });
    afterAll(() => t.close());

    it(`stops the chain after ${limit} derived generations with a failed execution`, async () => {
      const { signal: origin } = await emit(t.app.deps.bus.emit, {
        ctx: { tenant: org, actor: { type: 'human', id: 'ana' }, source: 'api' },
        input: { type: 'loop.ping', subject: 'loop:1', payload: { again: false } },
      });

      const stopped = await waitFor(async () => {
        const { data } = await listExecutions(t.app.deps.sql, org, { handler: 'test.echo', status: 'failed', limit: 10 });
        return data[0];
      }, 30_000, 'the loop to be stopped');
      expect(stopped.error?.code).toBe('causation_depth_exceeded');
      expect(stopped.error?.message).toContain(`the limit of ${limit}`);
      expect(stopped.attempts).toBe(1);

      // Every ping, the origin included, was handled once by each handler.
      await waitFor(async () => {
        const [row] = await t.app.deps.sql<{ settled: number }[]>`
          select count(*)::int as settled from org_loop.executions where status in ('succeeded', 'failed')`;
        return row!.settled === 2 * (limit + 1);
      }, 30_000, 'every execution to settle');

      const pings = await t.app.deps.sql<Generation[]>`
        select id, causation_id, causation_depth from org_loop.signals where type = 'loop.ping' order by tx_id, seq`;
      expect(pings).toHaveLength(limit + 1);
      // One chain: each generation caused by the one before, one step deeper.
      pings.forEach((ping, depth) => {
        expect(ping.causation_depth).toBe(depth);
        expect(ping.causation_id).toBe(depth === 0 ? null : pings[depth - 1]!.id);
      });
      expect(pings[0]!.id).toBe(origin.id);
      const derived = pings.filter((ping) => ping.causation_id !== null);
      expect(derived).toHaveLength(limit);
      // The stop is recorded on the last generation, the one that would have gone past the limit.
      expect(stopped.signal_id).toBe(pings[limit]!.id);

      const rows = await t.app.deps.sql<{ handler: string; status: string; signal_id: string }[]>`
        select handler, status, signal_id from org_loop.executions order by handler, status`;
      const tally = (handler: string, status: string) => rows.filter((row) => row.handler === handler && row.status === status).length;
      expect(tally('test.echo', 'succeeded')).toBe(limit);
      expect(tally('test.echo', 'failed')).toBe(1);
      // The guard stops only outputs past the limit; a handler producing nothing still runs.
      expect(tally('test.observer', 'succeeded')).toBe(limit + 1);
      expect(rows.filter((row) => row.status === 'failed')).toHaveLength(1);

      // The failure is a final, visible signal, not a retry loop.
      const failures = await t.app.deps.sql<{ payload: { final: boolean; error: { code: string } }; causation_id: string }[]>`
        select payload, causation_id from org_loop.signals where type = 'execution.failed'`;
      expect(failures).toHaveLength(1);
      expect(failures[0]).toMatchObject({ payload: { final: true, error: { code: 'causation_depth_exceeded' } }, causation_id: pings[limit]!.id });
    });
  });
}

loopSuite('with the default limit', {}, 16);
loopSuite('with SIGNALBUS_MAX_CAUSATION_DEPTH=3', { SIGNALBUS_MAX_CAUSATION_DEPTH: '3' }, 3);
