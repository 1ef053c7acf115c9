/** The handlers of the benchmarks' worker processes (scripts/bench/fanout-worker.ts), by name. */
import type { Handler } from '../../src/handlers/registry.ts';

/**
 * The replay bench's handler: runs on one signal in five (the orders) and
 * has outputs for one in 25 — what redelivery then dedupes — so a pass with
 * every output new stays within a bench's time on a small machine. Not on
 * its own derived type, so live dispatch of what a redelivery emits runs
 * nothing.
 */
export const REDELIVER_BENCH_HANDLER: Handler = {
  id: 'bench.redeliver',
  on: ['bench.order.placed'],
  handle(signal, tools) {
    if ((signal.payload as { i: number }).i % 25 !== 0) return;
    tools.emit({ type: 'bench.order.noted', subject: signal.subject, payload: { of: signal.id }, key: 'noted' });
    tools.propose({ kind: 'noop.record', params: { order: signal.id }, key: 'record' });
  },
};

export const BENCH_HANDLERS: Record<string, Handler> = {
  redeliver: REDELIVER_BENCH_HANDLER,
  proposer: {
    id: 'bench.proposer',
    on: ['shop.order.placed'],
    handle(signal, tools) {
      tools.propose({ kind: 'noop.record', params: { order: signal.id }, key: 'record' });
    },
  },
  ...Object.fromEntries(
    ['a', 'b', 'c'].map((name) => [name, { id: `bench.${name}`, on: ['shop.*'], start: 'now', handle() {} } satisfies Handler]),
  ),
};
