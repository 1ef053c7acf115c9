/**
 * Exactly-once fan-out under crashes: 8 writers emit 1,000 signals while a
 * worker child process (dispatcher, handlers, executors) is SIGKILLed five
 * times and replaced. Every (signal × handler) must run to success exactly
 * once, with exactly one set of outputs, and the jobs a killed process held
 * must be released by the survivors' sweeper within a minute each time.
 */
import { setTimeout as pause } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { subscribe } from '../../src/handlers/subscriptions.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import { emit } from '../../src/signals/emit.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { CRASH_HANDLER_IDS, CRASH_SIGNAL_TYPE, DERIVED_SIGNAL_TYPE } from '../support/crash-handlers.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { workerChildren, type WorkerChildren } from '../support/worker-children.ts';

const WRITERS = 8;
/**
 * Signals per writer in each wave; wave k > 0 is released by kill k. Every
 * kill releases one, so work is left after each kill however fast a fresh
 * worker catches up while the test waits for the dead one's locks to go.
 */
const WAVES = [50, 20, 15, 15, 15, 10];
const PER_WRITER = WAVES.reduce((sum, size) => sum + size, 0);
const SIGNALS = WRITERS * PER_WRITER;
const RUNS = SIGNALS * CRASH_HANDLER_IDS.length;
/** Kill when this share of handler runs has succeeded: spread over the run, each below the share released before it. */
const KILL_AT = [0.08, 0.24, 0.4, 0.56, 0.72];
const STALE_AFTER_MS = 3000;
const RECOVERY_LIMIT_MS = 60_000;
const TEST_TIMEOUT_MS = 300_000;
/** Waits end this long before the test's own timeout, so a slow run fails with the counts below, not a bare timeout. */
const REPORT_MARGIN_MS = 20_000;

let t: TestApp;
let org: Tenant;
let workers: WorkerChildren;

const sql = () => t.app.deps.sql;
const schema = (table: string) => sql()(`${org.schema}.${table}`);

async function succeededRuns(): Promise<number> {
  const [row] = await sql()<{ n: number }[]>`
    select count(*)::int as n from ${schema('executions')}
     where status = 'succeeded' and handler = any(${CRASH_HANDLER_IDS}::text[])`;
  return row!.n;
}

/** Jobs and queues still locked by any of `workerIds`. */
async function lockedBy(workerIds: string[]): Promise<number> {
  const [row] = await sql()<{ n: number }[]>`
    select (select count(*) from graphile_worker._private_jobs where locked_by = any(${workerIds}::text[]))::int
         + (select count(*) from graphile_worker._private_job_queues where locked_by = any(${workerIds}::text[]))::int as n`;
  return row!.n;
}

/**
 * The org's state for a failure message: progress counts, and the first ids
 * that break exactly-once (pairs run other than once, misses, repeated
 * outputs, unfinished directives) and the jobs still queued.
 */
async function diagnosis(): Promise<string> {
  const handlers = CRASH_HANDLER_IDS;
  const [row] = await sql()<{ report: unknown }[]>`
    select json_build_object(
      'signals', (select count(*) from ${schema('signals')} where type = ${CRASH_SIGNAL_TYPE}),
      'runs_by_handler_status', (select json_object_agg(key, n) from (
          select handler || ':' || status as key, count(*) as n from ${schema('executions')}
           where handler = any(${handlers}::text[]) group by 1) x),
      'pairs_not_run_once', (select json_agg(x) from (
          select signal_id, handler, json_agg(id || ':' || status) as executions from ${schema('executions')}
           where handler = any(${handlers}::text[])
           group by signal_id, handler having count(*) <> 1 or bool_or(status <> 'succeeded')
           order by signal_id limit 10) x),
      'pairs_never_run', (select json_agg(x) from (
          select s.id as signal_id, h.handler
            from ${schema('signals')} s cross join unnest(${handlers}::text[]) as h(handler)
           where s.type = ${CRASH_SIGNAL_TYPE}
             and not exists (select 1 from ${schema('executions')} e where e.signal_id = s.id and e.handler = h.handler)
           order by s.id limit 10) x),
      'completions_repeated', (select json_agg(x) from (
          select payload->>'signal_id' as signal_id, payload->>'handler' as handler, count(*) as n from ${schema('signals')}
           where type = 'execution.succeeded' and payload->>'handler' = any(${handlers}::text[])
           group by 1, 2 having count(*) > 1 limit 10) x),
      'derived_repeated', (select json_agg(x) from (
          select causation_id, count(*) as n, json_agg(distinct source) as sources from ${schema('signals')}
           where type = ${DERIVED_SIGNAL_TYPE} group by 1 having count(*) > 1 or bool_or(source <> 'handler:crash.emitter') limit 10) x),
      'directives_by_status', (select json_object_agg(status, n) from (
          select status, count(*) as n from ${schema('directives')} where kind = 'noop.record' group by 1) x),
      'directive_causes_repeated', (select json_agg(x) from (
          select causation_id, json_agg(id) as directives from ${schema('directives')}
           where kind = 'noop.record' group by 1 having count(*) > 1 limit 10) x),
      'directives_unfinished', (select json_agg(x) from (
          select id, status, attempts from ${schema('directives')}
           where kind = 'noop.record' and status <> 'succeeded' order by id limit 10) x),
      'directive_outcomes_repeated', (select json_agg(x) from (
          select payload->>'directive_id' as directive_id, count(*) as n from ${schema('signals')}
           where type = 'directive.succeeded' group by 1 having count(*) > 1 limit 10) x),
      'checkpoints', (select json_object_agg(handler, tx_id::text || '/' || seq) from ${schema('subscriptions')}
           where handler = any(${handlers}::text[])),
      'last_signal', (select tx_id::text || '/' || seq from ${schema('signals')}
           where type = ${CRASH_SIGNAL_TYPE} order by tx_id desc, seq desc limit 1),
      'jobs_left', (select count(*) from graphile_worker._private_jobs),
      'first_jobs_left', (select json_agg(x) from (
          select id, task_identifier, queue_name, attempts, locked_by, run_at, left(last_error, 300) as last_error
            from graphile_worker.jobs order by run_at limit 10) x),
      'queues_locked', (select json_agg(x) from (
          select queue_name, locked_by, locked_at from graphile_worker._private_job_queues where locked_by is not null limit 10) x)
    ) as report`;
  return JSON.stringify(row!.report);
}

/** The last lines of every worker process of this run, oldest first. */
const workerOutputs = () => workers.outputs();

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('crash');
  workers = workerChildren({
    DATABASE_URL: t.database.url,
    WORKER_CONCURRENCY: '4',
    WORKER_HEARTBEAT_MS: '500',
    WORKER_STALE_AFTER_MS: String(STALE_AFTER_MS),
  });
  await updatePolicy(t.app.deps.bus.emit, {
    ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'system' },
    input: { rules: [{ id: 'allow-noop', match: 'noop.*', effect: 'allow' }] },
  });
  // Subscribed before any writer starts, so no signal predates a subscription.
  for (const handler of CRASH_HANDLER_IDS) await subscribe(sql(), org, handler, 'beginning');
});

afterAll(async () => {
  // Even when the test failed midway: no worker process outlives the file.
  await workers?.killAll();
  await t?.close();
});

describe('fan-out under worker crashes', () => {
  it('runs every (signal × handler) exactly once across five SIGKILLs', async () => {
    const started = Date.now();
    const within = (ms: number) => Math.max(0, Math.min(ms, started + TEST_TIMEOUT_MS - REPORT_MARGIN_MS - Date.now()));
    // Every kill releases a wave, and waits for a share of runs the waves before it can reach.
    expect(WAVES).toHaveLength(KILL_AT.length + 1);
    KILL_AT.forEach((share, k) => {
      const released = WAVES.slice(0, k + 1).reduce((sum, size) => sum + size, 0) / PER_WRITER;
      expect(share, `kill ${k + 1} waits for a share of runs its released waves (${released}) cannot reach`).toBeLessThan(released);
    });
    let current = await workers.spawn();

    // Signals arrive in waves: the first at once, each later one released by
    // a kill, so signals also land while no worker is alive and while a fresh
    // one catches up from the checkpoints.
    const releases = WAVES.map(() => {
      let resolve!: () => void;
      const promise = new Promise<void>((done) => (resolve = done));
      return { promise, resolve };
    });
    releases[0]!.resolve();
    const writing = Promise.all(
      Array.from({ length: WRITERS }, async (_, writer) => {
        let n = 0;
        for (const [wave, size] of WAVES.entries()) {
          await releases[wave]!.promise;
          for (const end = n + size; n < end; n++) {
            await emit(t.app.deps.bus.emit, {
              ctx: { tenant: org, actor: { type: 'integration', id: `writer-${writer}` }, source: 'api' },
              input: { type: CRASH_SIGNAL_TYPE, subject: `item:${writer}:${n}`, payload: { writer, n } },
            });
            if (n % 10 === 9) await pause(20);
          }
        }
      }),
    );
    // Reported by the final await, or dropped when an earlier failure ends the test.
    writing.catch(() => {});

    const kills: Array<{ at: number; runsDone: number; held: number; readyMs: number; recoveredMs: number }> = [];
    try {
      for (const share of KILL_AT) {
        await waitFor(async () => (await succeededRuns()) >= Math.round(share * RUNS), within(90_000), `${share * 100}% of runs`);
        const victim = current;
        await workers.kill(victim);
        const killedAt = Date.now();
        releases[kills.length + 1]?.resolve();
        const runsDone = await succeededRuns();
        expect(runsDone, `kill ${kills.length + 1}: all ${RUNS} runs had succeeded already, the kill interrupted nothing`).toBeLessThan(RUNS);
        // No other worker is alive now: every lock left belongs to the dead one.
        const dead = await sql()<{ worker_id: string }[]>`
          select worker_id from public.worker_heartbeats where process like ${`%:${victim.pid}:%`}
          union
          select locked_by from graphile_worker._private_jobs where locked_by is not null
          union
          select locked_by from graphile_worker._private_job_queues where locked_by is not null`;
        const deadIds = dead.map((row) => row.worker_id);
        const held = await lockedBy(deadIds);
        current = await workers.spawn();
        const readyMs = Date.now() - killedAt;
        await waitFor(
          async () => (await lockedBy(deadIds)) === 0,
          within(RECOVERY_LIMIT_MS + 5_000),
          `jobs and queues of killed worker ${victim.pid} (${deadIds.join(', ')}; ${held} at the kill) to be released`,
        );
        kills.push({ at: killedAt - started, runsDone, held, readyMs, recoveredMs: Date.now() - killedAt });
      }
      await writing;

      await waitFor(
        async () => {
          const [row] = await sql()<{ runs: number; directives: number; jobs: number }[]>`
            select (select count(*) from ${schema('executions')}
                     where status = 'succeeded' and handler = any(${CRASH_HANDLER_IDS}::text[]))::int as runs,
                   (select count(*) from ${schema('directives')} where status = 'succeeded')::int as directives,
                   (select count(*) from graphile_worker._private_jobs)::int as jobs`;
          return row!.runs >= RUNS && row!.directives >= SIGNALS && row!.jobs === 0;
        },
        within(120_000),
        'every run and directive to finish',
      );
    } catch (error) {
      for (const release of releases) release.resolve();
      const state = await diagnosis().catch((failure: unknown) => `(diagnosis failed: ${String(failure)})`);
      throw new Error(
        `${(error as Error).message} after ${Date.now() - started} ms\nkills so far: ${JSON.stringify(kills)}\nstate: ${state}\n${workerOutputs()}`,
        { cause: error },
      );
    }
    console.info(`crash test: ${SIGNALS} signals, kills ${JSON.stringify(kills)}, ${Date.now() - started} ms`);

    // Counts and the first offending ids, for every assertion below.
    const state = await diagnosis();
    const why = (what: string) => `${what}; kills ${JSON.stringify(kills)}; state ${state}`;

    expect(kills).toHaveLength(KILL_AT.length);
    kills.forEach((kill, index) => expect(kill.recoveredMs, why(`kill ${index + 1}: locks released after`)).toBeLessThan(RECOVERY_LIMIT_MS));
    // The kills hit work in flight, or the recovery above measured nothing.
    expect(kills.reduce((sum, kill) => sum + kill.held, 0), why('jobs and queues the killed workers held')).toBeGreaterThan(0);

    const [signals] = await sql()<{ n: number }[]>`
      select count(*)::int as n from ${schema('signals')} where type = ${CRASH_SIGNAL_TYPE}`;
    expect(signals!.n, why(`${CRASH_SIGNAL_TYPE} signals`)).toBe(SIGNALS);

    // Executions: one succeeded row per (signal, handler), nothing else.
    const [runs] = await sql()<{ total: number; succeeded: number; pairs: number }[]>`
      select count(*)::int as total,
             count(*) filter (where status = 'succeeded')::int as succeeded,
             count(distinct (signal_id, handler))::int as pairs
        from ${schema('executions')} where handler = any(${CRASH_HANDLER_IDS}::text[])`;
    expect(runs, why('crash handler executions (see pairs_not_run_once, pairs_never_run)')).toEqual({ total: RUNS, succeeded: RUNS, pairs: RUNS });

    // No signal missed by any subscription.
    const [missed] = await sql()<{ n: number }[]>`
      select count(*)::int as n
        from ${schema('signals')} s cross join unnest(${CRASH_HANDLER_IDS}::text[]) as h(handler)
       where s.type = ${CRASH_SIGNAL_TYPE}
         and not exists (select 1 from ${schema('executions')} e
                          where e.signal_id = s.id and e.handler = h.handler and e.status = 'succeeded')`;
    expect(missed!.n, why('(signal, handler) pairs without a succeeded execution')).toBe(0);

    // One execution.succeeded signal per (signal, handler).
    const [completions] = await sql()<{ total: number; pairs: number }[]>`
      select count(*)::int as total, count(distinct (payload->>'signal_id', payload->>'handler'))::int as pairs
        from ${schema('signals')}
       where type = 'execution.succeeded' and payload->>'handler' = any(${CRASH_HANDLER_IDS}::text[])`;
    expect(completions, why('execution.succeeded signals (see completions_repeated)')).toEqual({ total: RUNS, pairs: RUNS });

    // One derived signal per cause.
    const [derived] = await sql()<{ total: number; causes: number; foreign: number }[]>`
      select count(*)::int as total, count(distinct causation_id)::int as causes,
             count(*) filter (where source <> 'handler:crash.emitter')::int as foreign
        from ${schema('signals')} where type = ${DERIVED_SIGNAL_TYPE}`;
    expect(derived, why(`${DERIVED_SIGNAL_TYPE} signals (see derived_repeated)`)).toEqual({ total: SIGNALS, causes: SIGNALS, foreign: 0 });

    // One directive per idempotency key and cause, each executed once to success.
    const [directives] = await sql()<{ total: number; keys: number; causes: number; succeeded: number }[]>`
      select count(*)::int as total, count(distinct idempotency_key)::int as keys,
             count(distinct causation_id)::int as causes,
             count(*) filter (where status = 'succeeded')::int as succeeded
        from ${schema('directives')} where kind = 'noop.record'`;
    expect(directives, why('noop.record directives (see directive_causes_repeated, directives_unfinished)')).toEqual({
      total: SIGNALS,
      keys: SIGNALS,
      causes: SIGNALS,
      succeeded: SIGNALS,
    });
    const [outcomes] = await sql()<{ total: number; directives: number }[]>`
      select count(*)::int as total, count(distinct payload->>'directive_id')::int as directives
        from ${schema('signals')} where type = 'directive.succeeded'`;
    expect(outcomes, why('directive.succeeded signals (see directive_outcomes_repeated)')).toEqual({ total: SIGNALS, directives: SIGNALS });

    // Every checkpoint has passed the last signal.
    const [behind] = await sql()<{ n: number }[]>`
      select count(*)::int as n from ${schema('subscriptions')} sub
       where sub.handler = any(${CRASH_HANDLER_IDS}::text[])
         and exists (select 1 from ${schema('signals')} s
                      where s.type = ${CRASH_SIGNAL_TYPE} and (s.tx_id, s.seq) > (sub.tx_id, sub.seq))`;
    expect(behind!.n, why('subscriptions behind the last signal (see checkpoints, last_signal)')).toBe(0);
  }, TEST_TIMEOUT_MS);
});
