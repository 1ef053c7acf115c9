/**
 * Tailing the log: read by cursor, then sleep until a wake-up. Subscribing
 * before the first read means a commit between the read and the sleep still
 * wakes us; reading by cursor means a spurious wake costs one empty query and
 * a missed one is impossible to act on twice. Nothing polls on a timer except
 * while committed rows wait above the horizon (see `hasSignalsAfter`).
 */
import type { Sql } from '../db/client.ts';
import type { Tenant } from '../core/tenant.ts';
import type { LogNotifier } from './log-notifier.ts';
import { decodeCursor, toSignal, type Cursor, type Signal } from './model.ts';
import { hasSignalsAfter, readSignalsAfter, type SignalFilter } from './read.ts';

export type TailEvent = { kind: 'signals'; signals: Signal[] } | { kind: 'heartbeat' };

export interface TailOptions {
  tenant: Tenant;
  after: Cursor;
  filter?: SignalFilter;
  heartbeatMs: number;
  abort: AbortSignal;
  pageSize?: number;
}

export async function* tailSignals(
  deps: { sql: Sql; notifier: Pick<LogNotifier, 'subscribe'> },
  { tenant, after, filter, heartbeatMs, abort, pageSize = 500 }: TailOptions,
): AsyncGenerator<TailEvent> {
  let woken = false;
  let wake: (() => void) | undefined;
  const onWake = () => {
    woken = true;
    wake?.();
  };
  const unsubscribe = await deps.notifier.subscribe(tenant.id, onWake);
  abort.addEventListener('abort', onWake);
  let cursor = after;
  let retryMs = 0;
  let lastOutput = Date.now();
  try {
    while (!abort.aborted) {
      woken = false;
      const rows = await readSignalsAfter(deps.sql, tenant, cursor, pageSize, filter);
      if (rows.length > 0) {
        cursor = decodeCursor(rows[rows.length - 1]!.position);
        lastOutput = Date.now();
        yield { kind: 'signals', signals: rows.map(toSignal) };
        if (rows.length === pageSize) continue;
      }
      const heldBack = await hasSignalsAfter(deps.sql, tenant, cursor, filter);
      retryMs = heldBack ? Math.min(Math.max(retryMs * 2, 20), 1_000) : 0;
      if (woken) continue;
      const untilHeartbeat = Math.max(0, lastOutput + heartbeatMs - Date.now());
      const timedOut = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(true), retryMs > 0 ? Math.min(retryMs, untilHeartbeat) : untilHeartbeat);
        wake = () => {
          clearTimeout(timer);
          resolve(false);
        };
      });
      wake = undefined;
      if (timedOut && Date.now() - lastOutput >= heartbeatMs && !abort.aborted) {
        lastOutput = Date.now();
        yield { kind: 'heartbeat' };
      }
    }
  } finally {
    abort.removeEventListener('abort', onWake);
    unsubscribe();
  }
}
