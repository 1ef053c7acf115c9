/**
 * Stream: emit throughput through `signalbus serve` (its own process) while
 * Server-Sent Events subscribers listen — real HTTP clients in a process of
 * their own — against the same emits with nobody listening, in one run.
 * Phases per round: one org without subscribers (the baseline), one org with
 * 100 subscribers, 100 orgs without subscribers, and 100 orgs with 10
 * subscribers each (1,000). Emits of the spread phases go round-robin over
 * the 100 orgs, so every subscriber has signals to receive. After each phase
 * with subscribers, every subscriber is checked to have received every signal
 * of its org exactly once, in order.
 *
 * Each phase with subscribers is followed by its floor: the same emits with
 * nobody subscribed while the subscriber process burns the CPU its clients
 * used in that phase. The clients share the machine with the server, so
 * that is what emit throughput is left when the server spends nothing on
 * the feed; the ratio to the floor is what the feed itself costs.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import autocannon from 'autocannon';
import { createApiKey } from '../../src/auth/api-keys.ts';
import { createApp } from '../../src/app.ts';
import { parseConfig } from '../../src/config.ts';
import { migratePublicSchema, PROJECT_ROOT } from '../../src/db/migrate.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { provisionOrg } from '../../src/tenancy/provision.ts';
import { benchDatabase, median, printTable, processCpuMs, startServer, type ServerProcess } from './support.ts';
import type { SubscriberCommand, SubscriberSpec, VerifyReport } from './stream-subscribers.ts';

const CONNECTIONS = 16;
const PHASE_SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ORGS = 100;
const ONE_ORG_SUBSCRIBERS = 100;
const PER_ORG_SUBSCRIBERS = 10;

const signalBody = JSON.stringify({
  type: 'shop.order.placed',
  subject: 'customer:cus_42',
  payload: { order_id: 'ord_123', amount: 4200, currency: 'eur', lines: [{ sku: 'sku_1', qty: 2 }] },
});

interface BenchOrg {
  slug: string;
  operator: string;
  viewer: string;
  /** The org's last signal so far, as a cursor ('0' before any). */
  head: string;
}

interface PhaseResult {
  rate: number;
  p50: number;
  p99: number;
  serverCpuMs: number;
  subscriberCpuMs: number;
  verify?: VerifyReport;
}

async function provision(databaseUrl: string): Promise<BenchOrg[]> {
  const setup = await createApp(parseConfig({ LOG_LEVEL: 'warn' }), { databaseUrl, logger: createLogger('warn') });
  try {
    const orgs: BenchOrg[] = [];
    for (let index = 0; index < ORGS; index += 4) {
      const slugs = Array.from({ length: Math.min(4, ORGS - index) }, (_, offset) => `s${String(index + offset).padStart(3, '0')}`);
      orgs.push(
        ...(await Promise.all(
          slugs.map(async (slug) => {
            const { tenant } = await provisionOrg(setup.deps, { input: { slug, name: slug } });
            const key = async (role: 'operator' | 'viewer') =>
              (await createApiKey(setup.deps, { tenant, input: { name: role, role, actor: { type: 'human', id: `${role}@${slug}.test` } }, by: PLATFORM_ACTOR }))
                .secret;
            return { slug, operator: await key('operator'), viewer: await key('viewer'), head: '0' };
          }),
        )),
      );
    }
    return orgs;
  } finally {
    await setup.close();
  }
}

/** Moves `org.head` to the org's last signal; returns how many signals lay past the old head. */
async function advanceHead(server: ServerProcess, org: BenchOrg): Promise<number> {
  let count = 0;
  // Twice empty in a row: a signal held above the horizon by another
  // transaction a moment longer is still counted.
  for (let empty = 0; empty < 2; ) {
    const response = await fetch(`${server.url}/v1/orgs/${org.slug}/signals?after=${org.head}&limit=1000`, {
      headers: { authorization: `Bearer ${org.viewer}` },
    });
    const page = (await response.json()) as { data: unknown[]; next_cursor: string | null; has_more: boolean };
    count += page.data.length;
    if (page.next_cursor) org.head = page.next_cursor;
    if (page.data.length === 0) {
      empty++;
      await new Promise((resolve) => setTimeout(resolve, 150));
    } else empty = 0;
  }
  return count;
}

function startSubscribers(): Promise<{ child: ChildProcess; ask: (command: SubscriberCommand) => Promise<any> }> {
  const child = fork(path.join(PROJECT_ROOT, 'scripts/bench/stream-subscribers.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ask = (command: SubscriberCommand) =>
    new Promise<any>((resolve, reject) => {
      const exited = (code: number | null) => reject(new Error(`subscriber process exited with ${code}`));
      child.once('exit', exited);
      child.once('message', (message) => {
        child.off('exit', exited);
        resolve(message);
      });
      child.send(command);
    });
  return new Promise((resolve, reject) => {
    child.once('message', () => resolve({ child, ask }));
    child.once('exit', (code) => reject(new Error(`subscriber process exited with ${code}`)));
  });
}

async function emitLoad(server: ServerProcess, targets: BenchOrg[]): Promise<autocannon.Result> {
  let next = 0;
  const result = await autocannon({
    url: server.url,
    connections: CONNECTIONS,
    duration: PHASE_SECONDS,
    requests: [
      {
        method: 'POST',
        body: signalBody,
        setupRequest: (request) => {
          const org = targets[next++ % targets.length]!;
          return {
            ...request,
            path: `/v1/orgs/${org.slug}/signals`,
            headers: { ...request.headers, 'content-type': 'application/json', authorization: `Bearer ${org.operator}` },
          };
        },
      },
    ],
  });
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`load run had ${result.non2xx} non-2xx answers and ${result.errors} errors`);
  return result;
}

export async function runStreamBench(): Promise<void> {
  const database = await benchDatabase();
  await migratePublicSchema(database.url);
  console.log(`provisioning ${ORGS} orgs…`);
  const orgs = await provision(database.url);
  const server = await startServer(database.url, {
    LOG_LEVEL: 'warn',
    SIGNALBUS_SSE_MAX_STREAMS_PER_KEY: '10000',
    SIGNALBUS_SSE_MAX_STREAMS_PER_ORG: '10000',
  });
  const subscribers = await startSubscribers();
  const one = [orgs[0]!];

  /** One phase: subscribers open at the orgs' heads, emits for PHASE_SECONDS, then every subscriber checked. */
  async function phase(targets: BenchOrg[], listeners: SubscriberSpec[], burnCpuMs = 0): Promise<PhaseResult> {
    if (burnCpuMs > 0) await subscribers.ask({ cmd: 'burn', cpuMs: burnCpuMs, durationMs: PHASE_SECONDS * 1000 });
    if (listeners.length > 0) {
      const { failed } = await subscribers.ask({ cmd: 'open', baseUrl: server.url, subscribers: listeners });
      if (failed > 0) throw new Error(`${failed} subscribers did not connect`);
    }
    const cpuBefore = [await processCpuMs(server.child.pid!), await processCpuMs(subscribers.child.pid!)];
    const load = await emitLoad(server, targets);
    const cpuAfter = [await processCpuMs(server.child.pid!), await processCpuMs(subscribers.child.pid!)];
    const expected: Record<string, { count: number; last: string | null }> = {};
    for (const org of targets) expected[org.slug] = { count: await advanceHead(server, org), last: org.head === '0' ? null : org.head };
    let verify: VerifyReport | undefined;
    if (listeners.length > 0) {
      verify = (await subscribers.ask({ cmd: 'verify', expected, timeoutMs: 120_000 })).report as VerifyReport;
      await subscribers.ask({ cmd: 'close' });
    }
    return {
      rate: Math.round(load['2xx'] / load.duration),
      p50: load.latency.p50,
      p99: load.latency.p99,
      serverCpuMs: cpuAfter[0]! - cpuBefore[0]!,
      subscriberCpuMs: cpuAfter[1]! - cpuBefore[1]!,
      ...(verify ? { verify } : {}),
    };
  }

  const listenersOf = (targets: BenchOrg[], perOrg: number): SubscriberSpec[] =>
    targets.flatMap((org) => Array.from({ length: perOrg }, () => ({ org: org.slug, key: org.viewer, after: org.head })));

  try {
    console.log('warming up…');
    await phase(orgs, []);
    const rounds: Array<Record<'none' | 'oneOrg' | 'oneOrgFloor' | 'spreadNone' | 'spread' | 'spreadFloor', PhaseResult>> = [];
    for (let round = 1; round <= ROUNDS; round++) {
      console.log(`round ${round}/${ROUNDS}: one org without and with ${ONE_ORG_SUBSCRIBERS} subscribers; ${ORGS} orgs without and with ${ORGS * PER_ORG_SUBSCRIBERS}…`);
      const none = await phase(one, []);
      const oneOrg = await phase(one, listenersOf(one, ONE_ORG_SUBSCRIBERS));
      const oneOrgFloor = await phase(one, [], oneOrg.subscriberCpuMs);
      const spreadNone = await phase(orgs, []);
      const spread = await phase(orgs, listenersOf(orgs, PER_ORG_SUBSCRIBERS));
      const spreadFloor = await phase(orgs, [], spread.subscriberCpuMs);
      rounds.push({ none, oneOrg, oneOrgFloor, spreadNone, spread, spreadFloor });
    }
    const rate = (pick: (typeof rounds)[number]['none']) => pick.rate;
    const med = (key: keyof (typeof rounds)[number], field: (result: PhaseResult) => number) => median(rounds.map((round) => field(round[key])));
    const ratio = (key: keyof (typeof rounds)[number], base: keyof (typeof rounds)[number]) =>
      +median(rounds.map((round) => round[key].rate / round[base].rate)).toFixed(2);
    const exact = (key: 'oneOrg' | 'spread') =>
      rounds.every((round) => round[key].verify!.exact === round[key].verify!.subscribers)
        ? 'all'
        : rounds.map((round) => `${round[key].verify!.exact}/${round[key].verify!.subscribers}`).join(' ');
    const row = (name: string, key: keyof (typeof rounds)[number], extra: Record<string, string | number>) => ({
      case: name,
      emits_per_s: med(key, rate),
      p50_ms: med(key, (result) => result.p50),
      p99_ms: med(key, (result) => result.p99),
      server_cpu_s: +(med(key, (result) => result.serverCpuMs) / 1000).toFixed(1),
      subscriber_cpu_s: +(med(key, (result) => result.subscriberCpuMs) / 1000).toFixed(1),
      ...extra,
    });
    printTable(`stream (single emits over ${CONNECTIONS} connections, ${PHASE_SECONDS} s per phase; medians of ${ROUNDS} rounds, ratios paired per round)`, [
      row('1 org, no subscriber (baseline)', 'none', { ratio: 1, target: '', exactly_once: '' }),
      row(`1 org, ${ONE_ORG_SUBSCRIBERS} subscribers`, 'oneOrg', { ratio: ratio('oneOrg', 'none'), target: '≥ 0.8', exactly_once: exact('oneOrg') }),
      row(`floor: 1 org, no subscriber, their CPU burnt`, 'oneOrgFloor', { ratio: ratio('oneOrgFloor', 'none'), target: '', exactly_once: '' }),
      row(`${ORGS} orgs, no subscriber`, 'spreadNone', { ratio: ratio('spreadNone', 'none'), target: '', exactly_once: '' }),
      row(`${ORGS} orgs, ${ORGS * PER_ORG_SUBSCRIBERS} subscribers`, 'spread', {
        ratio: ratio('spread', 'none'),
        target: '≥ 0.7',
        exactly_once: exact('spread'),
      }),
      row(`floor: ${ORGS} orgs, no subscriber, their CPU burnt`, 'spreadFloor', { ratio: ratio('spreadFloor', 'none'), target: '', exactly_once: '' }),
    ]);
    printTable('the feed against its floor (same emits, nobody subscribed, the subscribers\' CPU burnt; paired per round)', [
      { case: `1 org, ${ONE_ORG_SUBSCRIBERS} subscribers`, of_baseline: ratio('oneOrg', 'none'), floor_of_baseline: ratio('oneOrgFloor', 'none'), of_floor: ratio('oneOrg', 'oneOrgFloor') },
      {
        case: `${ORGS} orgs, ${ORGS * PER_ORG_SUBSCRIBERS} subscribers`,
        of_baseline: ratio('spread', 'none'),
        floor_of_baseline: ratio('spreadFloor', 'none'),
        of_floor: ratio('spread', 'spreadFloor'),
      },
    ]);
    console.log(`${ORGS} orgs with ${ORGS * PER_ORG_SUBSCRIBERS} subscribers against ${ORGS} orgs without: ${ratio('spread', 'spreadNone')}`);
    for (const round of rounds) {
      for (const key of ['oneOrg', 'spread'] as const) {
        const verify = round[key].verify!;
        if (verify.failures.length > 0) console.log(`${key}: ${verify.failures.join('; ')}`);
      }
    }
    console.log(`drain after the emits stopped (ms, per round): 1 org ${rounds.map((round) => round.oneOrg.verify!.drainMs).join(', ')}; spread ${rounds.map((round) => round.spread.verify!.drainMs).join(', ')}`);
    console.log(`\n${JSON.stringify({ benchmark: 'stream', rounds, settings: { connections: CONNECTIONS, phase_seconds: PHASE_SECONDS, rounds: ROUNDS } })}`);
  } finally {
    subscribers.child.kill('SIGTERM');
    await once(subscribers.child, 'exit').catch(() => {});
    await server.stop();
    await database.stop();
  }
}
