/**
 * A redeliver replay survives its worker: SIGKILL the worker process
 * mid-redelivery, a new one takes the job over and resumes from the last
 * checkpoint, ending with the same totals and the same set of outputs as an
 * uninterrupted run of the same redelivery over an identical org — every
 * derived signal, directive and execution once, none twice.
 *
 * The handlers are subscribed live as well, so the workers' dispatchers run
 * beside the replays. Their subscriptions start after the seeded signals by
 * position, not "now": a subscription started now starts at the visibility
 * horizon, which any transaction open on the server (another test file's)
 * holds back, and the dispatcher would then run some seeded signals live — its
 * outputs turning the replay's into deduplicated ones, its executions extra
 * rows. The outputs are compared once both orgs' fan-out is at rest.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import type { RedeliverCounts } from '../../src/handlers/redeliver-report.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import { redeliver } from '../../src/handlers/redeliver.ts';
import { ensureSubscriptions } from '../../src/handlers/subscriptions.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { emit } from '../../src/signals/emit.ts';
import { decodeCursor } from '../../src/signals/model.ts';
import { CRASH_HANDLER_IDS, CRASH_SIGNAL_TYPE, crashHandlers, DERIVED_SIGNAL_TYPE } from '../support/crash-handlers.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { waitQuiescent } from '../support/quiescent.ts';
import { workerChildren, type WorkerChildren } from '../support/worker-children.ts';
import { ctxOf, request, untilEnded } from './support.ts';

const SIGNALS = 240;
/** Already redelivered before the replay: their outputs exist and are deduplicated. */
const DONE_BEFORE = 60;
const PAGE_SIZE = 20;
const SELECTION = { types: [CRASH_SIGNAL_TYPE] };

let t: TestApp;
let workers: WorkerChildren;
let killed: Tenant;
let whole: Tenant;

async function seed(org: Tenant): Promise<void> {
  await updatePolicy(t.app.deps.bus.emit, {
    ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'system' },
    input: { rules: [{ id: 'allow-noop', match: 'noop.*', effect: 'allow' }] },
  });
  let donePosition = '';
  let lastPosition = '';
  for (let n = 0; n < SIGNALS; n++) {
    const { signal } = await emit(t.app.deps.bus.emit, {
      ctx: { tenant: org, actor: { type: 'integration', id: 'pinger' }, source: 'api' },
      input: { type: CRASH_SIGNAL_TYPE, subject: `item:${n}`, payload: { n } },
    });
    if (n === DONE_BEFORE - 1) donePosition = signal.position;
    lastPosition = signal.position;
  }
  // Subscribed right after the last of them: live dispatch leaves these signals to the redeliveries.
  const start = decodeCursor(lastPosition);
  await ensureSubscriptions(t.app.deps.sql, org, crashHandlers.map((handler) => ({ id: handler.id, start })));
  // Planning reads below the horizon: every seeded signal must be under it.
  await t.settle();
  await redeliver(t.app.deps.bus.runtime, { ctx: ctxOf(org), input: { selection: { until: donePosition }, reason: 'INC-2: first part' } });
}

beforeAll(async () => {
  t = await createTestApp({ handlers: crashHandlers });
  killed = await t.createOrg('rpl_redeliver_killed');
  whole = await t.createOrg('rpl_redeliver_whole');
  await seed(killed);
  await seed(whole);
  workers = workerChildren({ DATABASE_URL: t.database.url, SIGNALBUS_REPLAY_PAGE_SIZE: String(PAGE_SIZE) }, { spares: 1 });
}, 120_000);
afterAll(async () => {
  await workers?.killAll();
  await t?.close();
});

/** Every output of the org caused by a selected signal, by that signal (subject), with how often each is there. */
async function outputsOf(org: Tenant) {
  const { sql } = t.app.deps;
  const signals = sql(`${org.schema}.signals`);
  return sql<{ kind: string; cause: string; copies: number }[]>`
    select 'signal:' || d.type || ':' || d.source as kind, c.subject as cause, count(*)::int as copies
      from ${signals} d join ${signals} c on c.id = d.causation_id
     where d.type = ${DERIVED_SIGNAL_TYPE} and c.type = ${CRASH_SIGNAL_TYPE} group by 1, 2
    union all
    select 'directive:' || x.kind || ':' || x.status, c.subject, count(*)::int
      from ${sql(`${org.schema}.directives`)} x join ${signals} c on c.id = x.causation_id
     where c.type = ${CRASH_SIGNAL_TYPE} group by 1, 2
    union all
    select 'execution:' || e.handler || ':' || e.status, c.subject, count(*)::int
      from ${sql(`${org.schema}.executions`)} e join ${signals} c on c.id = e.signal_id
     where c.type = ${CRASH_SIGNAL_TYPE} group by 1, 2
    order by 1, 2`;
}

const processedOf = async (org: Tenant, id: string) => {
  const [row] = await t.app.deps.sql<{ processed: number }[]>`
    select processed::int from ${t.app.deps.sql(`${org.schema}.replays`)} where id = ${id}`;
  return row?.processed ?? 0;
};

describe('a redeliver replay whose worker is killed', () => {
  it('resumes from its checkpoint: the same totals and outputs as an uninterrupted run, nothing done twice', async () => {
    // Held to 60 signals a second: seconds of work to kill it in.
    const interrupted = await request(t, killed, { mode: 'redeliver', selection: SELECTION, rate_per_s: 60 });
    const first = await workers.spawn();
    await waitFor(async () => (await processedOf(killed, interrupted.id)) >= 3 * PAGE_SIZE, 90_000, 'the redelivery to get under way');
    await workers.kill(first);
    const atKill = await processedOf(killed, interrupted.id);
    expect(atKill).toBeLessThan(SIGNALS);

    const uninterrupted = await request(t, whole, { mode: 'redeliver', selection: SELECTION });
    await workers.spawn();
    const resumed = await untilEnded(t, killed, interrupted.id, 120_000);
    const straight = await untilEnded(t, whole, uninterrupted.id, 120_000);
    expect(resumed.status, JSON.stringify(resumed.error)).toBe('succeeded');
    expect(straight.status, JSON.stringify(straight.error)).toBe('succeeded');
    // Nothing of either org's live fan-out is still to come when their outputs are compared.
    for (const org of [killed, whole]) await waitQuiescent(t.app.deps.sql, org, { handlers: CRASH_HANDLER_IDS.length, timeoutMs: 60_000 });

    // Resumed, not restarted: one start, checkpoints only advancing, the one at the kill among them.
    const steps = await t.app.deps.sql<{ type: string; processed: number | null }[]>`
      select type, (payload->>'processed')::int as processed from ${t.app.deps.sql(`${killed.schema}.signals`)}
       where subject = ${`replay:${interrupted.id}`} order by tx_id, seq`;
    expect(steps.filter((step) => step.type === 'replay.started')).toHaveLength(1);
    const counts = steps.filter((step) => step.type === 'replay.progress').map((step) => step.processed!);
    counts.slice(1).forEach((count, index) => expect(count, `checkpoint ${index + 1}`).toBeGreaterThanOrEqual(counts[index]!));
    expect(counts).toContain(atKill);

    // The same totals: every selected signal's runs, once.
    type Report = RedeliverCounts;
    const [a, b] = [resumed.report as unknown as Report, straight.report as unknown as Report];
    for (const replay of [resumed, straight]) expect([replay.processed, replay.total]).toEqual([SIGNALS, SIGNALS]);
    expect(a.runs).toBe(SIGNALS * CRASH_HANDLER_IDS.length);
    for (const key of ['processed', 'runs', 'failed'] as const) expect(a[key], key).toBe(b[key]);
    // Uninterrupted: what the first part did is deduplicated, the rest is new.
    const left = SIGNALS - DONE_BEFORE;
    expect(b).toMatchObject({ signals_new: left, signals_deduplicated: DONE_BEFORE, directives_new: left, directives_deduplicated: DONE_BEFORE, failed: 0 });
    // Resumed: the same outputs, split otherwise only by the page the kill cut short, which is read
    // again and whose outputs written before the kill count as deduplicated — at most one page of them.
    for (const kind of ['signals', 'directives'] as const) {
      const [created, deduplicated] = [a[`${kind}_new`], a[`${kind}_deduplicated`]];
      expect(created + deduplicated, kind).toBe(SIGNALS);
      expect(left - created, `${kind} written before the kill and read again`).toBeGreaterThanOrEqual(0);
      expect(left - created, `${kind} written before the kill and read again`).toBeLessThanOrEqual(PAGE_SIZE);
    }

    // The same outputs, each exactly once: one derived signal, one held directive and one execution per (signal × producing handler).
    const outputs = await outputsOf(killed);
    expect(outputs).toEqual(await outputsOf(whole));
    expect(outputs.filter((row) => row.copies !== 1)).toEqual([]);
    expect(new Set(outputs.map((row) => row.kind))).toEqual(
      new Set([`signal:${DERIVED_SIGNAL_TYPE}:handler:crash.emitter`, 'directive:noop.record:awaiting_approval', 'execution:crash.emitter:succeeded', 'execution:crash.proposer:succeeded']),
    );
    expect(outputs.filter((row) => row.kind.startsWith('directive:'))).toHaveLength(SIGNALS);
  }, 300_000);
});
