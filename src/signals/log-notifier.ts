/**
 * Wakes the log's tailers after commits. Within a process, `committed` wakes
 * local subscribers at once. Across processes, one LISTEN connection per
 * process receives `signalbus_log` notifications and fans them out to every
 * local subscriber; NOTIFYs are coalesced per flush window so a burst of
 * single-signal commits costs one NOTIFY, not one each — a NOTIFY inside every
 * emit transaction would serialize commits on the notification queue lock.
 * The first commit after a quiet window is announced at once (latency of the
 * fan-out path); later ones wait for the window's end.
 */
import { EventEmitter } from 'node:events';
import type { Sql } from '../db/client.ts';

export const LOG_CHANNEL = 'signalbus_log';
const ANY = Symbol('any org');

export interface LogNotifier {
  /** A transaction that appended to `orgId`'s log has committed. */
  committed(orgId: string): void;
  /** Calls `onWake` whenever `orgId`'s log may have grown; returns the unsubscribe. */
  subscribe(orgId: string, onWake: () => void): Promise<() => void>;
  /** Calls `onWake(orgId)` for every org's commits; `null` when any org's may have been missed. */
  subscribeAll(onWake: (orgId: string | null) => void): Promise<() => void>;
  close(): Promise<void>;
}

export function createLogNotifier(
  deps: { sql: Sql; onError?: (error: unknown) => void },
  { flushMs = 5 }: { flushMs?: number } = {},
): LogNotifier {
  const local = new EventEmitter();
  local.setMaxListeners(0);
  const pending = new Set<string>();
  let flushTimer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  let lastFlushAt = -Infinity;
  let listening: Promise<{ unlisten: () => Promise<void> }> | undefined;
  let closed = false;

  const wakeAll = () => {
    for (const name of local.eventNames()) {
      if (name === ANY) local.emit(ANY, null);
      else local.emit(name);
    }
  };
  const wake = (orgId: string) => {
    local.emit(orgId);
    local.emit(ANY, orgId);
  };
  const listen = () =>
    (listening ??= deps.sql.listen(
      LOG_CHANNEL,
      (payload) => {
        for (const id of payload.split(',')) wake(id);
      },
      // (Re)connected: anything may have been missed while the listener was down.
      wakeAll,
    ));

  const flush = async () => {
    flushTimer = undefined;
    lastFlushAt = performance.now();
    const orgs = [...pending];
    pending.clear();
    // NOTIFY payloads are capped at 8000 bytes.
    for (let start = 0; start < orgs.length; start += 200) {
      await deps.sql.notify(LOG_CHANNEL, orgs.slice(start, start + 200).join(',')).catch((error) => deps.onError?.(error));
    }
  };

  return {
    committed(orgId) {
      wake(orgId);
      if (closed) return;
      pending.add(orgId);
      if (flushTimer) return;
      const wait = lastFlushAt + flushMs - performance.now();
      // setImmediate still merges the commits of this event-loop turn.
      flushTimer = wait > 0 ? setTimeout(flush, wait) : setImmediate(flush);
    },
    async subscribe(orgId, onWake) {
      local.on(orgId, onWake);
      await listen();
      return () => {
        local.off(orgId, onWake);
      };
    },
    async subscribeAll(onWake) {
      local.on(ANY, onWake);
      await listen();
      return () => {
        local.off(ANY, onWake);
      };
    },
    async close() {
      closed = true;
      if (flushTimer) {
        clearTimeout(flushTimer as NodeJS.Timeout);
        clearImmediate(flushTimer as NodeJS.Immediate);
        await flush();
      }
      if (listening) await (await listening).unlisten().catch(() => {});
      listening = undefined;
      local.removeAllListeners();
    },
  };
}
