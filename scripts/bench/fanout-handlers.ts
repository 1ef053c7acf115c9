/** The handlers of the fan-out benchmark. */
import type { Handler } from '../../src/handlers/registry.ts';

export const BENCH_HANDLERS: Record<string, Handler> = {
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
