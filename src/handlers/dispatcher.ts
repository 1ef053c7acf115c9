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
 * sweep as a safety net, and a short re-poll while committed rows wait above
 * the horizon behind a long transaction. The sweep costs the same whatever
 * the number of idle orgs: a few statements read every org's subscriptions
 * against its log's head and name the orgs with something unread, and only
 * those are visited — an org with nothing new costs two index probes, not a
 * transaction, and an org that never had an installation (with no built-in
 * handlers, as deployed) is not even checked. Start-up is one sweep, and
 * waits only for the orgs it found work for.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Sql } from '../db/client.ts';
import { addJobs } from '../db/jobs.ts';
import { quoteIdent, withTransaction } from '../db/transaction.ts';
import { newId } from '../core/ids.ts';
import type { LogNotifier } from '../signals/log-notifier.ts';
import type { Tenant } from '../core/tenant.ts';
import { isoTimestamp } from '../signals/model.ts';
import { compare, planDispatch, stampOrdered, type PageRow, type Position } from './dispatch-plan.ts';
import type { OrgHandlers } from './org-handlers.ts';
import type { RegisteredHandler } from './registry.ts';
import { ensureSubscriptions, type SubscriptionStart } from './subscriptions.ts';


export interface DispatcherDeps {
  sql: Sql;
  handlers: OrgHandlers;
  /** Resolves an org id to its tenant (the tenant directory: its stored schema name). */
  tenants: { find(orgId: string): Promise<Tenant | undefined> };
  notifier: Pick<LogNotifier, 'subscribeAll' | 'subscribeInstallations'>;
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
  /**
   * Orgs one sweep statement checks: it locks each org's tables for its
   * duration, so a chunk stays well inside the server's lock table.
   */
  sweepChunk?: number;
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
  const registry = await deps.handlers.forOrg(tenant);
  const handlers = registry.list();
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
      .map((row) => ({ handler: registry.get(row.handler)!, position: { tx: BigInt(row.tx_id), seq: BigInt(row.seq) } }))
      .filter((sub): sub is { handler: RegisteredHandler; position: Position } => sub.handler !== undefined);
    const oldest = subs.reduce((min, sub) => (compare(sub.position, min) < 0 ? sub.position : min), subs[0]!.position);
    const newest = subs.reduce((max, sub) => (compare(sub.position, max) > 0 ? sub.position : max), subs[0]!.position);

    const page = await sql<PageRow[]>`
      select tx_id::text as tx_id, seq::text as seq, id, type, subject, trace,
             ${needsPayload ? sql`payload, actor, source, correlation_id, causation_id, installation_id, ${sql.unsafe(isoTimestamp('occurred_at'))} as occurred_at` : sql`null as payload`}
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
  /** The org's installations changed: its handlers are reloaded and subscribed on its next pass. */
  reload(orgId: string): void;
  stop(): Promise<void>;
}

/** Rule handlers' ids: `<installation id>.<rule id>`. */
const RULE_HANDLER_LIKE = 'ins\\_%';

/**
 * One statement saying, for each of `orgs`, whether it has a subscription of
 * a live handler (a built-in, or a rule) whose checkpoint lies behind the
 * log's head, or lacks a built-in's subscription (`behind`); and, with rules,
 * a digest of its installations' states, which any change to one changes
 * (`installed_at`).
 */
async function sweepOrgs(
  sql: Sql,
  orgs: ReadonlyArray<{ id: string; schema: string }>,
  { builtins, rules }: { builtins: readonly string[]; rules: boolean },
): Promise<Array<{ org: string; behind: boolean; installed_at: string | null }>> {
  if (orgs.length === 0) return [];
  const branches = orgs.map(({ id, schema }) => {
    const table = (name: string) => `${quoteIdent(schema)}.${name}`;
    // Each parameter appears in every statement, so the server can type it.
    const missing = builtins.length > 0 ? `(select count(*) from ${table('subscriptions')} where handler = any($1::text[])) < $2::int` : '$2::int < 0';
    // Any change to an installation changes the last signal folded into its row.
    const installedAt = rules ? `(select md5(string_agg(id || ':' || last_signal_id, ',' order by id)) from ${table('installations')})` : 'null::text';
    return `select ${quoteLiteral(id)} as org, (exists (
      select 1 from ${table('subscriptions')} sub
       where (sub.handler = any($1::text[]) or sub.handler like '${RULE_HANDLER_LIKE}')
         and exists (select 1 from ${table('signals')} s where (s.tx_id, s.seq) > (sub.tx_id, sub.seq))) or ${missing}) as behind,
      ${installedAt} as installed_at`;
  });
  return sql.unsafe<{ org: string; behind: boolean; installed_at: string | null }[]>(branches.join('\nunion all\n'), [builtins as string[], builtins.length]);
}

function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

export function createDispatcher(deps: DispatcherDeps): Dispatcher {
  const { pageSize = 1000, sweepIntervalMs = 10_000, heldBackRetryMs = 50, minIntervalMs = 10, maxIntervalMs = 100, sweepChunk = 100 } = deps;
  const states = new Map<string, { running: Promise<void> | null; again: boolean; timer?: NodeJS.Timeout }>();
  /** Per org, the handler ids whose subscriptions were last ensured. */
  const ensured = new Map<string, string>();
  /** The orgs that existed when this dispatcher started. */
  let startOrgs: Set<string> | undefined;
  let stopped = false;
  let unsubscribe: (() => void) | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;

  const tenants = new Map<string, Tenant>();

  /** Subscribes the org's handlers it has not yet, and drops those of rules no longer served (disabled, uninstalled). */
  const ensure = async (tenant: Tenant) => {
    const handlers = (await deps.handlers.forOrg(tenant)).list();
    const ids = handlers.map((handler) => handler.id).join(',');
    if (ensured.get(tenant.id) === ids) return;
    // Orgs that exist at start get each handler's declared start. An org
    // created later had no "before": its handlers read its log from the
    // beginning, or its first signals would race the subscription.
    const created = startOrgs?.has(tenant.id) === false;
    await ensureSubscriptions(
      deps.sql,
      tenant,
      handlers.map((handler) => ({
        id: handler.id,
        start: (created && typeof handler.start !== 'object' ? 'beginning' : handler.start) as SubscriptionStart | undefined,
      })),
    );
    if (deps.handlers.rules) {
      await deps.sql`
        delete from ${deps.sql(`${tenant.schema}.subscriptions`)}
         where handler like ${RULE_HANDLER_LIKE} and handler <> all(${handlers.map((handler) => handler.id)}::text[])`;
    }
    ensured.set(tenant.id, ids);
  };

  const run = async (orgId: string) => {
    const state = states.get(orgId)!;
    try {
      let tenant = tenants.get(orgId);
      if (!tenant) {
        tenant = await deps.tenants.find(orgId);
        if (!tenant) return;
        tenants.set(orgId, tenant);
      }
      for (;;) {
        state.again = false;
        // Again each pass: a reload (an installation changed) may have come in during the last.
        await ensure(tenant);
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

  const reload = (orgId: string) => {
    deps.handlers.invalidate(orgId);
    wake(orgId);
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

  /** Per org, where its installations last changed, as the last sweep saw it. */
  const installedAt = new Map<string, string | null>();

  /**
   * Wakes the orgs with something to do; resolves with those found behind
   * and, when built-ins serve every org, the orgs that exist. Only orgs that
   * can have handlers are checked: every org when there are built-ins, else
   * the orgs that ever had an installation (`public.installation_routes`) —
   * an org that never installed anything costs the sweep nothing.
   */
  const sweepOnce = async (): Promise<{ orgs: string[] | undefined; behind: string[] }> => {
    const builtins = deps.handlers.builtins.list().map((handler) => handler.id);
    const everyOrg = builtins.length > 0;
    if (!everyOrg && !deps.handlers.rules) return { orgs: undefined, behind: [] };
    const orgs = await deps.sql<Array<{ id: string; schema: string }>>`
      select o.id, o.schema_name as schema from public.organizations o
       where o.status <> 'importing' and (${everyOrg} or exists (select 1 from public.installation_routes r where r.org_id = o.id))
       order by o.id`;
    const behind: string[] = [];
    for (let start = 0; start < orgs.length && !stopped; start += sweepChunk) {
      for (const row of await sweepOrgs(deps.sql, orgs.slice(start, start + sweepChunk), { builtins, rules: deps.handlers.rules })) {
        // Installations changed since the last sweep: their handlers are loaded again. On first
        // sight there is nothing loaded to refresh, and a rule's subscription starts where its
        // installation went live, so the org's next pass misses nothing.
        const changed = deps.handlers.rules && installedAt.has(row.org) && installedAt.get(row.org) !== row.installed_at;
        installedAt.set(row.org, row.installed_at);
        if (changed) deps.handlers.invalidate(row.org);
        if (row.behind) behind.push(row.org);
        if (row.behind || changed) wake(row.org);
      }
    }
    return { orgs: everyOrg ? orgs.map((org) => org.id) : undefined, behind };
  };

  const sweep = async () => {
    try {
      await sweepOnce();
    } catch (error) {
      deps.logger.warn({ err: error }, 'dispatch sweep failed');
    }
    clearTimeout(sweepTimer);
    if (!stopped) sweepTimer = setTimeout(sweep, sweepIntervalMs);
  };

  return {
    async start() {
      const unsubscribeLog = await deps.notifier.subscribeAll((orgId) => {
        if (orgId === null) void sweep();
        else wake(orgId);
      });
      const unsubscribeInstallations = await deps.notifier.subscribeInstallations((orgId) => {
        if (orgId !== null) reload(orgId);
      });
      unsubscribe = () => {
        unsubscribeLog();
        unsubscribeInstallations();
      };
      const first = await sweepOnce();
      if (first.orgs) startOrgs = new Set(first.orgs);
      clearTimeout(sweepTimer);
      sweepTimer = setTimeout(sweep, sweepIntervalMs);
      // Subscriptions exist once start() returns: a signal committed after it
      // is delivered. Orgs whose installations are only being loaded again
      // are not waited for: start-up does not grow with them.
      await Promise.all(first.behind.map((org) => states.get(org)?.running));
    },
    wake,
    reload,
    async stop() {
      stopped = true;
      unsubscribe?.();
      clearTimeout(sweepTimer);
      for (const state of states.values()) clearTimeout(state.timer);
      await Promise.all([...states.values()].map((state) => state.running));
    },
  };
}
