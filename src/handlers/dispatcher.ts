/**
 * The dispatcher: fan-out by reading the log. For one org, one transaction
 * locks the org's subscription rows, reads the next page of signals after
 * the oldest checkpoint (commit-ordered, below the visibility horizon),
 * enqueues one `handle_signal` job per matching (signal, handler) through a
 * single `add_jobs` call, and advances every checkpoint — all or nothing. A
 * crash before commit leaves no job and no progress; the row locks let only
 * one dispatcher work an org at a time, and the next finds the checkpoints
 * already moved. So each committed signal reaches each subscription once.
 *
 * Woken by the log notifier after commits (coalesced per org), with a slow
 * sweep over all orgs as a safety net, and a short re-poll while committed
 * rows wait above the horizon behind a long transaction.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Sql } from '../db/client.ts';
import { addJobs } from '../db/jobs.ts';
import { withTransaction } from '../db/transaction.ts';
import { newId } from '../core/ids.ts';
import type { LogNotifier } from '../signals/log-notifier.ts';
import type { Tenant } from '../core/tenant.ts';
import { compare, planDispatch, stampOrdered, type PageRow, type Position } from './dispatch-plan.ts';
import type { HandlerRegistry, RegisteredHandler } from './registry.ts';
import { ensureSubscriptions } from './subscriptions.ts';


export interface DispatcherDeps {
  sql: Sql;
  handlers: HandlerRegistry;
  /** Resolves an org id to its tenant (the tenant directory: its stored schema name). */
  tenants: { find(orgId: string): Promise<Tenant | undefined> };
  notifier: Pick<LogNotifier, 'subscribeAll'>;
  logger: Logger;
  pageSize?: number;
  sweepIntervalMs?: number;
  heldBackRetryMs?: number;
  /**
   * Under a stream of wake-ups, the least time between passes for one org:
   * each pass then carries many signals instead of one or two, which is
   * what keeps fan-out cheap next to ingest. An idle org's first wake-up
   * runs at once.
   */
  minIntervalMs?: number;
  /**
   * Under a heavy stream the interval grows with what the last pass carried
   * (a millisecond per signal) up to this. A pass has a fixed cost — its
   * transaction, its commit, and graphile-worker's NOTIFY, whose commit
   * serializes with every other notifying commit, the log's included — and
   * at thousands of signals a second that cost, paid a hundred times a
   * second, took a fifth of ingest. A light stream keeps `minIntervalMs`.
   */
  maxIntervalMs?: number;
}

export interface DispatchResult {
  signals: number;
  jobs: number;
  /** The page was full: more may follow at once. */
  full: boolean;
  /** Committed signals wait above the horizon. */
  heldBack: boolean;
}


const YIELD_EVERY_MS = 10;

/** One dispatch transaction for `tenant`. Exported for tests and benchmarks. */
export async function dispatchOnce(
  deps: Pick<DispatcherDeps, 'sql' | 'handlers'>,
  tenant: Tenant,
  { pageSize = 1000 }: { pageSize?: number } = {},
): Promise<DispatchResult> {
  const handlers = deps.handlers.list();
  if (handlers.length === 0) return { signals: 0, jobs: 0, full: false, heldBack: false };
  // Conditions read the signal's content; without any, type and subject decide.
  const needsPayload = handlers.some((handler) => handler.needsPayload);
  return withTransaction(deps.sql, undefined, async ({ sql }) => {
    const subscriptions = await sql<{ handler: string; tx_id: string; seq: string }[]>`
      select handler, tx_id::text as tx_id, seq::text as seq from ${sql(`${tenant.schema}.subscriptions`)}
       where handler = any(${handlers.map((handler) => handler.id)}::text[])
       order by handler for update`;
    if (subscriptions.length === 0) return { signals: 0, jobs: 0, full: false, heldBack: false };
    const subs = subscriptions
      .map((row) => ({ handler: deps.handlers.get(row.handler)!, position: { tx: BigInt(row.tx_id), seq: BigInt(row.seq) } }))
      .filter((sub): sub is { handler: RegisteredHandler; position: Position } => sub.handler !== undefined);
    const oldest = subs.reduce((min, sub) => (compare(sub.position, min) < 0 ? sub.position : min), subs[0]!.position);
    const newest = subs.reduce((max, sub) => (compare(sub.position, max) > 0 ? sub.position : max), subs[0]!.position);

    const page = await sql<PageRow[]>`
      select tx_id::text as tx_id, seq::text as seq, id, type, subject, trace,
             ${needsPayload ? sql`payload, actor, source, correlation_id, causation_id` : sql`null as payload`}
        from ${sql(`${tenant.schema}.signals`)}
       where (tx_id, seq) > (${oldest.tx.toString()}::xid8, ${oldest.seq.toString()}::bigint)
         and tx_id < pg_snapshot_xmin(pg_current_snapshot())
       -- Qualified: bare names would sort by the text aliases above ('10' < '9').
       order by signals.tx_id, signals.seq
       limit ${pageSize}`;

    const { jobs, advanced } = planDispatch({ orgId: tenant.id, page, subs, newExecutionId: () => newId('execution') });
    // Ordered jobs get strictly increasing run_at from a clock read under the subscription locks (see stampOrdered).
    if (jobs.some((job) => job.queue_name)) {
      const [clock] = await sql<{ us: string }[]>`select (extract(epoch from clock_timestamp()) * 1000000)::bigint::text as us`;
      stampOrdered(jobs, BigInt(clock!.us));
    }
    await addJobs(sql, jobs);

    const last = page[page.length - 1];
    if (last && advanced.length > 0) {
      await sql`
        update ${sql(`${tenant.schema}.subscriptions`)}
           set tx_id = ${last.tx_id}::xid8, seq = ${last.seq}::bigint, updated_at = now()
         where handler = any(${advanced}::text[])`;
    }
    const full = page.length === pageSize;
    let heldBack = false;
    if (!full) {
      const from = last ? { tx: BigInt(last.tx_id), seq: BigInt(last.seq) } : newest;
      const [row] = await sql<{ found: boolean }[]>`
        select exists (select 1 from ${sql(`${tenant.schema}.signals`)}
                        where (tx_id, seq) > (${from.tx.toString()}::xid8, ${from.seq.toString()}::bigint)) as found`;
      heldBack = row!.found;
    }
    return { signals: page.length, jobs: jobs.length, full, heldBack };
  }) as Promise<DispatchResult>;
}

/** The least time from one pass's start to the next under a stream of wake-ups: a millisecond per signal the pass carried, within bounds. */
export function passInterval(signalsCarried: number, { minIntervalMs, maxIntervalMs }: { minIntervalMs: number; maxIntervalMs: number }): number {
  return Math.min(maxIntervalMs, Math.max(minIntervalMs, signalsCarried));
}

export interface Dispatcher {
  start(): Promise<void>;
  /** Dispatches `orgId` soon (coalesced with a run already under way). */
  wake(orgId: string): void;
  stop(): Promise<void>;
}

export function createDispatcher(deps: DispatcherDeps): Dispatcher {
  const { pageSize = 1000, sweepIntervalMs = 10_000, heldBackRetryMs = 50, minIntervalMs = 10, maxIntervalMs = 100 } = deps;
  const states = new Map<string, { running: Promise<void> | null; again: boolean; timer?: NodeJS.Timeout }>();
  const ensured = new Set<string>();
  /** The orgs that existed when this dispatcher started. */
  let startOrgs: Set<string> | undefined;
  let stopped = false;
  let unsubscribe: (() => void) | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;

  const tenants = new Map<string, Tenant>();

  const run = async (orgId: string) => {
    const state = states.get(orgId)!;
    try {
      let tenant = tenants.get(orgId);
      if (!tenant) {
        tenant = await deps.tenants.find(orgId);
        if (!tenant) return;
        tenants.set(orgId, tenant);
      }
      if (!ensured.has(orgId)) {
        // Orgs that exist at start get each handler's declared start. An org
        // created later had no "before": its handlers read its log from the
        // beginning, or its first signals would race the subscription.
        const handlers = startOrgs?.has(orgId) === false
          ? deps.handlers.list().map((handler) => ({ id: handler.id, start: 'beginning' as const }))
          : deps.handlers.list();
        await ensureSubscriptions(deps.sql, tenant, handlers);
        ensured.add(orgId);
      }
      for (;;) {
        state.again = false;
        const passStarted = performance.now();
        const result = await dispatchOnce(deps, tenant, { pageSize });
        if (stopped) return;
        if (result.full) continue;
        if (state.again) {
          const wait = passInterval(result.signals, { minIntervalMs, maxIntervalMs }) - (performance.now() - passStarted);
          if (wait > 0) await sleep(wait);
          continue;
        }
        if (result.heldBack) {
          clearTimeout(state.timer);
          state.timer = setTimeout(() => wake(orgId), heldBackRetryMs);
        }
        return;
      }
    } catch (error) {
      deps.logger.warn({ err: error, org: orgId }, 'dispatch failed; retrying');
      if (!stopped) {
        clearTimeout(state.timer);
        state.timer = setTimeout(() => wake(orgId), 1000);
      }
    }
  };

  const wake = (orgId: string) => {
    if (stopped) return;
    let state = states.get(orgId);
    if (!state) states.set(orgId, (state = { running: null, again: false }));
    if (state.running) {
      state.again = true;
      return;
    }
    state.running = run(orgId).finally(() => {
      state.running = null;
    });
  };

  const sweep = async () => {
    try {
      const orgs = await deps.sql<{ id: string }[]>`select id from public.organizations order by id`;
      for (const { id } of orgs) wake(id);
    } catch (error) {
      deps.logger.warn({ err: error }, 'dispatch sweep failed');
    }
    clearTimeout(sweepTimer);
    if (!stopped) sweepTimer = setTimeout(sweep, sweepIntervalMs);
  };

  return {
    async start() {
      unsubscribe = await deps.notifier.subscribeAll((orgId) => {
        if (orgId === null) void sweep();
        else wake(orgId);
      });
      const orgs = await deps.sql<{ id: string }[]>`select id from public.organizations order by id`;
      startOrgs = new Set(orgs.map((org) => org.id));
      await sweep();
      // Subscriptions exist once start() returns: a signal committed after it is delivered.
      await Promise.all([...states.values()].map((state) => state.running));
    },
    wake,
    async stop() {
      stopped = true;
      unsubscribe?.();
      clearTimeout(sweepTimer);
      for (const state of states.values()) clearTimeout(state.timer);
      await Promise.all([...states.values()].map((state) => state.running));
    },
  };
}
