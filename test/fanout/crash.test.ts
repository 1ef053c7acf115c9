/**
 * Exactly-once fan-out under crashes: 8 writers emit 1,000 signals while a
 * worker child process (dispatcher, handlers, executors) is SIGKILLed five
 * times and replaced. Every (signal × handler) must run to success exactly
 * once, with exactly one set of outputs, and the jobs a killed process held
 * must be released by the survivors' sweeper within a minute each time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as pause } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PLATFORM_ACTOR } from '../../src/auth/actor.ts';
import { subscribe } from '../../src/handlers/subscriptions.ts';
import { updatePolicy } from '../../src/policy/store.ts';
import { emit } from '../../src/signals/emit.ts';
import type { Tenant } from '../../src/tenancy/tenant.ts';
import { CRASH_HANDLER_IDS, CRASH_SIGNAL_TYPE, DERIVED_SIGNAL_TYPE } from '../support/crash-handlers.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { releaseResource, trackResource } from '../support/leak-guard.ts';

const WRITERS = 8;
/** Signals per writer in each wave; wave k > 0 is released by kill k. */
const WAVES = [50, 25, 25, 25];
const PER_WRITER = WAVES.reduce((sum, size) => sum + size, 0);
const SIGNALS = WRITERS * PER_WRITER;
const RUNS = SIGNALS * CRASH_HANDLER_IDS.length;
/** Kill when this share of handler runs has succeeded: spread over the run, work always left. */
const KILL_AT = [0.08, 0.24, 0.4, 0.56, 0.72];
const STALE_AFTER_MS = 3000;
const RECOVERY_LIMIT_MS = 60_000;

const workerScript = fileURLToPath(new URL('../support/worker-process.ts', import.meta.url));
const projectRoot = fileURLToPath(new URL('../../', import.meta.url));

interface WorkerChild {
  child: ChildProcess;
  pid: number;
  exited: Promise<void>;
  output: string[];
}

let t: TestApp;
let org: Tenant;
const children = new Set<WorkerChild>();

async function spawnWorker(): Promise<WorkerChild> {
  const child = spawn(process.execPath, ['--import', 'tsx', workerScript], {
    cwd: projectRoot,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      DATABASE_URL: t.database.url,
      LOG_LEVEL: 'warn',
      WORKER_CONCURRENCY: '4',
      WORKER_HEARTBEAT_MS: '500',
      WORKER_STALE_AFTER_MS: String(STALE_AFTER_MS),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    output.push(...chunk.toString().split('\n').filter(Boolean));
    if (output.length > 400) output.splice(0, output.length - 400);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const worker: WorkerChild = {
    child,
    pid: child.pid!,
    output,
    exited: new Promise((resolve) => child.once('exit', () => resolve())),
  };
  children.add(worker);
  trackResource(worker, `worker process ${child.pid}`);
  void worker.exited.then(() => {
    children.delete(worker);
    releaseResource(worker);
  });
  await new Promise<void>((resolve, reject) => {
    const ready = () => {
      if (!output.some((line) => line.startsWith('worker ready'))) return;
      child.stdout!.off('data', ready);
      resolve();
    };
    child.stdout!.on('data', ready);
    void worker.exited.then(() => reject(new Error(`worker process exited before it was ready:\n${output.join('\n')}`)));
  });
  return worker;
}

async function kill(worker: WorkerChild): Promise<void> {
  worker.child.kill('SIGKILL');
  await worker.exited;
}

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

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('crash');
  await updatePolicy(t.app.deps.bus.emit, {
    ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'system' },
    input: { rules: [{ id: 'allow-noop', match: 'noop.*', effect: 'allow' }] },
  });
  // Subscribed before any writer starts, so no signal predates a subscription.
  for (const handler of CRASH_HANDLER_IDS) await subscribe(sql(), org, handler, 'beginning');
});

afterAll(async () => {
  // Even when the test failed midway: no worker process outlives the file.
  await Promise.all([...children].map(kill));
  await t?.close();
});

describe('fan-out under worker crashes', () => {
  it('runs every (signal × handler) exactly once across five SIGKILLs', async () => {
    const started = Date.now();
    let current = await spawnWorker();

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

    const kills: Array<{ at: number; runsDone: number; held: number; recoveredMs: number }> = [];
    try {
      for (const share of KILL_AT) {
        await waitFor(async () => (await succeededRuns()) >= Math.round(share * RUNS), 90_000, `${share * 100}% of runs`);
        const victim = current;
        await kill(victim);
        const killedAt = Date.now();
        releases[kills.length + 1]?.resolve();
        const runsDone = await succeededRuns();
        expect(runsDone).toBeLessThan(RUNS);
        // No other worker is alive now: every lock left belongs to the dead one.
        const dead = await sql()<{ worker_id: string }[]>`
          select worker_id from public.worker_heartbeats where process like ${`%:${victim.pid}:%`}
          union
          select locked_by from graphile_worker._private_jobs where locked_by is not null
          union
          select locked_by from graphile_worker._private_job_queues where locked_by is not null`;
        const deadIds = dead.map((row) => row.worker_id);
        const held = await lockedBy(deadIds);
        current = await spawnWorker();
        await waitFor(async () => (await lockedBy(deadIds)) === 0, RECOVERY_LIMIT_MS + 5_000, `jobs of killed worker ${victim.pid} to be released`);
        kills.push({ at: killedAt - started, runsDone, held, recoveredMs: Date.now() - killedAt });
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
        120_000,
        'every run and directive to finish',
      );
    } catch (error) {
      for (const release of releases) release.resolve();
      throw new Error(`${(error as Error).message}\nkills so far: ${JSON.stringify(kills)}\nworker output:\n${current.output.slice(-40).join('\n')}`);
    }
    console.info(`crash test: ${SIGNALS} signals, kills ${JSON.stringify(kills)}, ${Date.now() - started} ms`);

    expect(kills).toHaveLength(KILL_AT.length);
    for (const kill of kills) expect(kill.recoveredMs).toBeLessThan(RECOVERY_LIMIT_MS);
    // The kills hit work in flight, or the recovery above measured nothing.
    expect(kills.reduce((sum, kill) => sum + kill.held, 0)).toBeGreaterThan(0);

    const [signals] = await sql()<{ n: number }[]>`
      select count(*)::int as n from ${schema('signals')} where type = ${CRASH_SIGNAL_TYPE}`;
    expect(signals!.n).toBe(SIGNALS);

    // Executions: one succeeded row per (signal, handler), nothing else.
    const [runs] = await sql()<{ total: number; succeeded: number; pairs: number }[]>`
      select count(*)::int as total,
             count(*) filter (where status = 'succeeded')::int as succeeded,
             count(distinct (signal_id, handler))::int as pairs
        from ${schema('executions')} where handler = any(${CRASH_HANDLER_IDS}::text[])`;
    expect(runs).toEqual({ total: RUNS, succeeded: RUNS, pairs: RUNS });

    // No signal missed by any subscription.
    const [missed] = await sql()<{ n: number }[]>`
      select count(*)::int as n
        from ${schema('signals')} s cross join unnest(${CRASH_HANDLER_IDS}::text[]) as h(handler)
       where s.type = ${CRASH_SIGNAL_TYPE}
         and not exists (select 1 from ${schema('executions')} e
                          where e.signal_id = s.id and e.handler = h.handler and e.status = 'succeeded')`;
    expect(missed!.n).toBe(0);

    // One execution.succeeded signal per (signal, handler).
    const [completions] = await sql()<{ total: number; pairs: number }[]>`
      select count(*)::int as total, count(distinct (payload->>'signal_id', payload->>'handler'))::int as pairs
        from ${schema('signals')}
       where type = 'execution.succeeded' and payload->>'handler' = any(${CRASH_HANDLER_IDS}::text[])`;
    expect(completions).toEqual({ total: RUNS, pairs: RUNS });

    // One derived signal per cause.
    const [derived] = await sql()<{ total: number; causes: number; foreign: number }[]>`
      select count(*)::int as total, count(distinct causation_id)::int as causes,
             count(*) filter (where source <> 'handler:crash.emitter')::int as foreign
        from ${schema('signals')} where type = ${DERIVED_SIGNAL_TYPE}`;
    expect(derived).toEqual({ total: SIGNALS, causes: SIGNALS, foreign: 0 });

    // One directive per idempotency key and cause, each executed once to success.
    const [directives] = await sql()<{ total: number; keys: number; causes: number; succeeded: number }[]>`
      select count(*)::int as total, count(distinct idempotency_key)::int as keys,
             count(distinct causation_id)::int as causes,
             count(*) filter (where status = 'succeeded')::int as succeeded
        from ${schema('directives')} where kind = 'noop.record'`;
    expect(directives).toEqual({ total: SIGNALS, keys: SIGNALS, causes: SIGNALS, succeeded: SIGNALS });
    const [outcomes] = await sql()<{ total: number; directives: number }[]>`
      select count(*)::int as total, count(distinct payload->>'directive_id')::int as directives
        from ${schema('signals')} where type = 'directive.succeeded'`;
    expect(outcomes).toEqual({ total: SIGNALS, directives: SIGNALS });

    // Every checkpoint has passed the last signal.
    const [behind] = await sql()<{ n: number }[]>`
      select count(*)::int as n from ${schema('subscriptions')} sub
       where sub.handler = any(${CRASH_HANDLER_IDS}::text[])
         and exists (select 1 from ${schema('signals')} s
                      where s.type = ${CRASH_SIGNAL_TYPE} and (s.tx_id, s.seq) > (sub.tx_id, sub.seq))`;
    expect(behind!.n).toBe(0);
  }, 300_000);
});
