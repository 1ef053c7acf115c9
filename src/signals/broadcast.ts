/**
 * Live streams share their reads. Per org and process, one hub tails the log
 * by cursor under the rules of `read.ts` (below the horizon, woken by the
 * notifier, polling only while committed rows wait above the horizon) and
 * serializes each signal once; the subscribers at its head are its members
 * and receive its batches through a bounded queue each. So a commit batch
 * costs the org one read, however many subscribers it has: one statement
 * (`readTailPage`), which also tells whether rows wait above the horizon.
 * The hubs woken together are read together, a few statements at a time; a
 * round of reads starts at once after a quiet spell, and otherwise waits out
 * `tickMs` since the last, so that under load many commits of an org share a
 * read and the members' writes come in fewer, larger batches.
 *
 * A subscriber behind the hub's head catches up on its own, by cursor, up to
 * that head, then joins. Every row at or below the head lies below a horizon
 * the hub has seen, so the bounded catch-up read sees exactly the rows the
 * hub passed on: nothing falls between the two. A member drops what it
 * already has by position, so nothing repeats. A member whose queue would
 * overflow is dropped from the hub (the hub never waits for anyone) and
 * catches up again from the last batch it accepted.
 */
import type { Sql } from '../db/client.ts';
import type { Tenant } from '../core/tenant.ts';
import type { LogNotifier } from './log-notifier.ts';
import { decodeCursor, encodeCursor, toSignal, type Cursor, type SignalRow, type TypeFilter } from './model.ts';
import { currentHorizon, readSignalPage, readTailPage, type Present } from './read.ts';

/**
 * What a follower writes: server-sent event frames as UTF-8, or a heartbeat
 * while idle. Members that take a whole batch share its one encoding.
 */
export type StreamChunk = { kind: 'events'; data: Uint8Array } | { kind: 'heartbeat' };

/** Signals that committed before a "from now" stream began, to leave out. */
export interface PastFilter {
  isPast(position: string): boolean;
  /** From this position on nothing is past. */
  pastEnds: string;
}

export interface FollowOptions {
  tenant: Tenant;
  /** Everything at or before this cursor is the subscriber's already. */
  after: Cursor;
  types?: TypeFilter;
  past?: PastFilter;
  heartbeatMs: number;
  abort: AbortSignal;
}

export interface LogBroadcast {
  follow(options: FollowOptions): AsyncGenerator<StreamChunk>;
  /** The log's present: where a stream started without a cursor begins, and what is already past. */
  present(): Promise<Present>;
  /** Open hubs, their members, and how many members were dropped for a full queue. */
  stats(): { hubs: number; members: number; dropped: number };
}

export interface BroadcastOptions {
  /** Rows per read, the hub's and a catch-up's. */
  pageSize?: number;
  /** Byte budget of one read, as for list pages (`readSignalPage`). */
  maxPageBytes?: number;
  /** Event bytes a member may have waiting to be written before it is dropped from the hub. */
  queueBytes?: number;
  /** Least time between the starts of two reads of the hubs. */
  tickMs?: number;
  /** Reads of a round in flight at once (each holds a pool connection). */
  concurrentReads?: number;
}

interface Entry {
  position: string;
  type: string;
  frame: string;
}

interface Batch {
  entries: Entry[];
  last: string;
  /** All frames, encoded once for the members that take every entry. */
  data?: Uint8Array;
}

interface Member {
  /** Everything at or before it was queued or written, or is not for this member. */
  position: string;
  accepts: ((type: string) => boolean) | undefined;
  past: PastFilter | undefined;
  queue: Uint8Array[];
  queuedBytes: number;
  dropped: boolean;
  wake: (() => void) | undefined;
}

interface Hub {
  tenant: Tenant;
  head: string;
  refs: number;
  members: Set<Member>;
  ready: Promise<void>;
  stopped: boolean;
  failure: unknown;
  unsubscribe: (() => void) | undefined;
  /** Backoff of the look-again while rows are held above the horizon; 0 when none are. */
  retryMs: number;
  retryTimer: NodeJS.Timeout | undefined;
}

const utf8 = new TextEncoder();

export const frameOf = (row: SignalRow): string => `id: ${row.position}\nevent: signal\ndata: ${JSON.stringify(toSignal(row))}\n\n`;

/** The type filter as a predicate, matching what the SQL filter selects. */
export function typeMatcher({ exact, prefixes }: TypeFilter): (type: string) => boolean {
  const exactTypes = new Set(exact);
  // The prefixes are LIKE patterns: `\`-escaped, ending in `%`.
  const starts = prefixes.map((pattern) => pattern.slice(0, -1).replace(/\\(.)/g, '$1'));
  return (type) => exactTypes.has(type) || starts.some((start) => type.startsWith(start));
}

export function createLogBroadcast(
  deps: { sql: Sql; notifier: Pick<LogNotifier, 'subscribe'> },
  { pageSize = 500, maxPageBytes = 2 * 1024 * 1024, queueBytes = 4 * 1024 * 1024, tickMs = 10, concurrentReads = 4 }: BroadcastOptions = {},
): LogBroadcast {
  const hubs = new Map<string, Hub>();
  let dropped = 0;
  /** Hubs to read: woken, started, past a cut page, or looking again. */
  const due = new Set<Hub>();
  let reading = false;
  let readTimer: NodeJS.Timeout | undefined;
  let lastReadAt = -Infinity;

  function acquire(tenant: Tenant): Hub {
    const existing = hubs.get(tenant.id);
    if (existing && !existing.stopped) {
      existing.refs++;
      return existing;
    }
    const hub: Hub = {
      tenant,
      head: '',
      refs: 1,
      members: new Set(),
      ready: Promise.resolve(),
      stopped: false,
      failure: undefined,
      unsubscribe: undefined,
      retryMs: 0,
      retryTimer: undefined,
    };
    hubs.set(tenant.id, hub);
    hub.ready = start(hub);
    return hub;
  }

  function release(hub: Hub) {
    if (--hub.refs > 0) return;
    stop(hub);
  }

  function stop(hub: Hub) {
    hub.stopped = true;
    hub.unsubscribe?.();
    hub.unsubscribe = undefined;
    clearTimeout(hub.retryTimer);
    due.delete(hub);
    if (hubs.get(hub.tenant.id) === hub) hubs.delete(hub.tenant.id);
    for (const member of hub.members) member.wake?.();
  }

  async function start(hub: Hub) {
    try {
      // Subscribed before the head is taken: a commit after it wakes the hub.
      const unsubscribe = await deps.notifier.subscribe(hub.tenant.id, () => schedule(hub));
      if (hub.stopped) return unsubscribe();
      hub.unsubscribe = unsubscribe;
      hub.head = encodeCursor((await currentHorizon(deps.sql)).cursor);
    } catch (error) {
      hub.failure = error;
      stop(hub);
      throw error;
    }
    schedule(hub);
  }

  function schedule(hub: Hub) {
    // Before its head is taken a hub has nothing to read from; its start reads next.
    if (hub.stopped || hub.head === '') return;
    due.add(hub);
    kick();
  }

  function kick() {
    if (reading || readTimer || due.size === 0) return;
    // A wake-up after a quiet spell is read at once (after this turn's other
    // wake-ups); under load the next read waits out the tick.
    readTimer = setTimeout(() => void readDue(), Math.max(0, lastReadAt + tickMs - performance.now()));
  }

  async function readDue() {
    readTimer = undefined;
    reading = true;
    lastReadAt = performance.now();
    const round = [...due];
    due.clear();
    let next = 0;
    const reader = async () => {
      while (next < round.length) await readHub(round[next++]!);
    };
    try {
      await Promise.all(Array.from({ length: Math.min(concurrentReads, round.length) }, reader));
    } finally {
      reading = false;
      kick();
    }
  }

  async function readHub(hub: Hub) {
    if (hub.stopped) return;
    clearTimeout(hub.retryTimer);
    try {
      const { rows, more, heldBack } = await readTailPage(deps.sql, hub.tenant, decodeCursor(hub.head), { limit: pageSize, maxBytes: maxPageBytes });
      if (hub.stopped) return;
      if (rows.length > 0) publish(hub, rows);
      if (more) return void due.add(hub);
      // Committed rows above the horizon wake nobody when the transaction
      // holding it back ends: look again shortly (see `TailPage`).
      hub.retryMs = heldBack ? Math.min(Math.max(hub.retryMs * 2, 20), 1_000) : 0;
      if (hub.retryMs > 0) hub.retryTimer = setTimeout(() => schedule(hub), hub.retryMs);
    } catch (error) {
      hub.failure = error;
      stop(hub);
    }
  }

  function publish(hub: Hub, rows: SignalRow[]) {
    const entries = rows.map((row) => ({ position: row.position, type: row.type, frame: frameOf(row) }));
    const batch: Batch = { entries, last: entries[entries.length - 1]!.position };
    hub.head = batch.last;
    for (const member of hub.members) offer(hub, member, batch);
  }

  function offer(hub: Hub, member: Member, batch: Batch) {
    if (batch.last <= member.position) return;
    const takesAll = !member.accepts && !member.past && batch.entries[0]!.position > member.position;
    const data = takesAll
      ? (batch.data ??= utf8.encode(batch.entries.map((entry) => entry.frame).join('')))
      : utf8.encode(framesFor(member, batch.entries));
    // A member with nothing waiting takes any batch, so one large batch
    // alone never drops it.
    if (member.queue.length > 0 && member.queuedBytes + data.byteLength > queueBytes) {
      hub.members.delete(member);
      member.dropped = true;
      dropped++;
      member.wake?.();
      return;
    }
    member.position = batch.last;
    if (member.past && member.position >= member.past.pastEnds) member.past = undefined;
    if (data.byteLength === 0) return;
    member.queue.push(data);
    member.queuedBytes += data.byteLength;
    member.wake?.();
  }

  function framesFor(member: Pick<Member, 'position' | 'accepts' | 'past'>, entries: Entry[]): string {
    let text = '';
    for (const entry of entries) {
      if (entry.position <= member.position) continue;
      if (member.accepts && !member.accepts(entry.type)) continue;
      if (member.past?.isPast(entry.position)) continue;
      text += entry.frame;
    }
    return text;
  }

  /** Waits for the member's queue, its drop, or `ms`; true when the time ran out. */
  function nextFor(member: Member, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(true), Math.max(0, ms));
      member.wake = () => {
        clearTimeout(timer);
        member.wake = undefined;
        resolve(false);
      };
    });
  }

  async function* follow({ tenant, after, types, past, heartbeatMs, abort }: FollowOptions): AsyncGenerator<StreamChunk> {
    const hub = acquire(tenant);
    const member: Member = {
      position: encodeCursor(after),
      accepts: types ? typeMatcher(types) : undefined,
      past,
      queue: [],
      queuedBytes: 0,
      dropped: false,
      wake: undefined,
    };
    const onAbort = () => member.wake?.();
    abort.addEventListener('abort', onAbort);
    let lastOutput = Date.now();
    try {
      await hub.ready;
      while (!abort.aborted) {
        if (hub.stopped) throw hub.failure ?? new Error('the stream closed');
        if (member.position < hub.head) {
          const head = hub.head;
          const { rows, more } = await readSignalPage(deps.sql, tenant, decodeCursor(member.position), {
            limit: pageSize,
            maxBytes: maxPageBytes,
            filter: { ...(types ? { types } : {}), until: decodeCursor(head) },
          });
          const text = framesFor(member, rows.map((row) => ({ position: row.position, type: row.type, frame: frameOf(row) })));
          // A page that was not cut (by count or bytes) read everything up to the head as it was.
          member.position = more ? rows[rows.length - 1]!.position : head;
          if (member.past && member.position >= member.past.pastEnds) member.past = undefined;
          if (text.length > 0) {
            lastOutput = Date.now();
            yield { kind: 'events', data: utf8.encode(text) };
          }
          continue;
        }
        // At the head: joined without an await in between, so no batch falls between.
        member.dropped = false;
        hub.members.add(member);
        while (!abort.aborted && !hub.stopped) {
          if (member.queue.length > 0) {
            const data = member.queue.length === 1 ? member.queue[0]! : Buffer.concat(member.queue);
            member.queue = [];
            member.queuedBytes = 0;
            lastOutput = Date.now();
            yield { kind: 'events', data };
            continue;
          }
          if (member.dropped) break;
          const timedOut = await nextFor(member, lastOutput + heartbeatMs - Date.now());
          if (timedOut && Date.now() - lastOutput >= heartbeatMs && !abort.aborted) {
            lastOutput = Date.now();
            yield { kind: 'heartbeat' };
          }
        }
        hub.members.delete(member);
      }
    } finally {
      abort.removeEventListener('abort', onAbort);
      member.wake = undefined;
      hub.members.delete(member);
      release(hub);
    }
  }

  return {
    follow,
    present: () => currentHorizon(deps.sql),
    stats() {
      let members = 0;
      for (const hub of hubs.values()) members += hub.members.size;
      return { hubs: hubs.size, members, dropped };
    },
  };
}
