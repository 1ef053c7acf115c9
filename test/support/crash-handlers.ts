/**
 * The three handlers of the fan-out crash test, shared by the test and the
 * worker child process it kills. Each leaves a countable trace, so duplicate
 * or missing runs show up in the tables: a derived signal, a directive, and
 * (the ordered one) only its execution row.
 */
import type { Handler } from '../../src/handlers/registry.ts';

export const CRASH_SIGNAL_TYPE = 'load.ping';
export const DERIVED_SIGNAL_TYPE = 'load.pong';

export const crashHandlers: Handler[] = [
  {
    id: 'crash.emitter',
    on: [CRASH_SIGNAL_TYPE],
    handle(signal, tools) {
      tools.emit({ type: DERIVED_SIGNAL_TYPE, subject: signal.subject, payload: { ping: signal.id }, key: 'pong' });
    },
  },
  {
    id: 'crash.proposer',
    on: [CRASH_SIGNAL_TYPE],
    handle(signal, tools) {
      tools.propose({ kind: 'noop.record', params: { ping: signal.id }, key: 'record' });
    },
  },
  {
    // Ordered, so a kill also leaves named queues locked for the sweeper to free.
    id: 'crash.plain',
    on: [CRASH_SIGNAL_TYPE],
    ordered: true,
    handle() {},
  },
];

export const CRASH_HANDLER_IDS = crashHandlers.map((handler) => handler.id);
