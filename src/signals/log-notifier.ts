/**
 * Wakes the log's tailers after commits. Within a process, `committed` wakes
 * local subscribers at once. Across processes, one LISTEN connection per
 * process receives `signalbus_log` notifications and fans them out to every
 * local subscriber; NOTIFYs are coalesced per flush window so a burst of
 * single-signal commits costs one NOTIFY, not one each — a NOTIFY inside every
 * emit transaction would serialize commits on the notification queue lock.
 * The first commit after a quiet window is announced at once (latency of the
 * fan-out path); later ones wait for the window's end.
 *
 * A commit that changed the org's installations is announced as well under
 * `!<org id>` in the same payload, for the caches of what installations make
 * live (handlers, payload schemas).
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Sql } from '../db/client.ts';

export const LOG_CHANNEL = 'signalbus_log';
const ANY = Symbol('any org');
const INSTALLATIONS = Symbol('installations changed');
/** In a payload, an org whose installations changed: `!<org id>@<notifier>`. */
const CHANGED = '!';

export interface LogNotifier {
  /** A transaction that appended to `orgId`'s log has committed; `installations` when it changed them. */
  committed(orgId: string, changes?: { installations?: boolean }): void;
  /** Calls `onWake` whenever `orgId`'s log may have grown; returns the unsubscribe. */
  subscribe(orgId: string, onWake: () => void): Promise<() => void>;
  /** Calls `onWake(orgId)` for every org's commits; `null` when any org's may have been missed. */
  subscribeAll(onWake: (orgId: string | null) => void): Promise<() => void>;
  /** Calls `onChange(orgId)` after a commit that changed the org's installations; `null` when any may have been missed. */
  subscribeInstallations(onChange: (orgId: string | null) => void): Promise<() => void>;
  close(): Promise<void>;
}

export function createLogNotifier(
  deps: { sql: Sql; onError?: (error: unknown) => void },
  { flushMs = 5 }: { flushMs?: number } = {},
): LogNotifier {
  const local = new EventEmitter();
  /** Tells this notifier's own announcements from other processes'. */
  const self = randomBytes(6).toString('hex');
  local.setMaxListeners(0);
  const pending = new Set<string>();
  let flushTimer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  let lastFlushAt = -Infinity;
  let listening: Promise<{ unlisten: () => Promise<void> }> | undefined;
  let closed = false;

  const wakeAll = () => {
    for (const name of local.eventNames()) {
      if (name === ANY || name === INSTALLATIONS) local.emit(name, null);
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
        for (const id of payload.split(',')) {
          if (!id.startsWith(CHANGED)) wake(id);
          else {
            // This process's own were announced locally at commit.
            const [orgId, from] = id.slice(1).split('@');
            if (from !== self) local.emit(INSTALLATIONS, orgId);
          }
        }
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
    committed(orgId, changes) {
      if (changes?.installations) local.emit(INSTALLATIONS, orgId);
      wake(orgId);
      if (closed) return;
      pending.add(orgId);
      if (changes?.installations) pending.add(`${CHANGED}${orgId}@${self}`);
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
    async subscribeInstallations(onChange) {
      local.on(INSTALLATIONS, onChange);
      await listen();
      return () => {
        local.off(INSTALLATIONS, onChange);
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
