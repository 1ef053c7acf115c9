/**
 * The console's signals page on an org with `BENCH_SIGNALS` signals (default
 * 100,000, inserted through the batch route): each filter the page offers —
 * none, a deep cursor, a common and a rare type glob, an exact rare type,
 * subject, correlation id, a recent and an old time bound, and combinations
 * — timed as whole HTTP requests against `signalbus serve`, signed in as an
 * operator. The baseline, in the same run and interleaved, is the API's
 * `GET …/signals?limit=50` with the same filter (the API has no time filter;
 * those rows have none). The target: every console page under 200 ms.
 *
 * BENCH_EXPLAIN=1 also prints the plan of each filter's page read
 * (EXPLAIN ANALYZE of the statement the page runs).
 */
import postgres from 'postgres';
import { createApiKey } from '../../src/auth/api-keys.ts';
import { createApp } from '../../src/app.ts';
import { parseConfig } from '../../src/config.ts';
import { createSql } from '../../src/db/client.ts';
import { migratePublicSchema } from '../../src/db/migrate.ts';
import { generateMasterKeys } from '../../src/secrets/keys.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { decodeCursor, parseTypeFilter } from '../../src/signals/model.ts';
import { listSignals, type SignalFilter } from '../../src/signals/read.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { provisionOrg } from '../../src/tenancy/provision.ts';
import { benchDatabase, median, printTable, startServer } from './support.ts';

const SIGNALS = Number(process.env.BENCH_SIGNALS ?? 100_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const BATCH = 1000;
const TARGET_MS = 200;

/** The org's log: mostly orders and sign-ups, a rare audit type, 2000 subjects, 10 signals per correlation id. */
function signalAt(i: number) {
  const type = i % 10_000 === 5_000 ? 'audit.rare' : ['order.created', 'order.created', 'order.paid', 'order.paid', 'user.signed_up', 'order.created', 'order.shipped', 'forum.post.created', 'order.paid', 'user.signed_up'][i % 10]!;
  return {
    type,
    subject: `customer:${i % 2000}`,
    correlation_id: `corr-${Math.floor(i / 10)}`,
    dedupe_key: `bench-${i}`,
    payload: { n: i, amount: (i * 37) % 100_000, currency: 'eur', note: 'x'.repeat(120) },
  };
}

interface Case {
  name: string;
  query: Record<string, string>;
  /** The API takes the same filter (not a time bound). */
  api: boolean;
}

export async function runConsoleBench(): Promise<void> {
  const database = await benchDatabase();
  await migratePublicSchema(database.url);
  const masterKeys = generateMasterKeys('bench');
  const setup = await createApp(parseConfig({ LOG_LEVEL: 'warn', SIGNALBUS_RATE_LIMIT_KEY_PER_S: '0', SIGNALBUS_RATE_LIMIT_ORG_PER_S: '0' }), {
    databaseUrl: database.url,
    logger: createLogger('warn'),
    masterKeys,
  });
  const { tenant } = await provisionOrg(setup.deps, { input: { slug: 'bench', name: 'Bench' } });
  const { secret } = await createApiKey(setup.deps, {
    tenant,
    input: { name: 'bench', role: 'operator', actor: { type: 'human', id: 'bench@acme.test' } },
    by: PLATFORM_ACTOR,
  });
  const insertStarted = performance.now();
  for (let from = 0; from < SIGNALS; from += BATCH) {
    const signals = Array.from({ length: Math.min(BATCH, SIGNALS - from) }, (_, k) => signalAt(from + k));
    const response = await setup.http.request('/v1/orgs/bench/signals/batch', {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ signals }),
    });
    if (response.status >= 300) throw new Error(`batch insert answered ${response.status}: ${await response.text()}`);
  }
  await setup.close();
  console.log(`inserted ${SIGNALS} signals in ${((performance.now() - insertStarted) / 1000).toFixed(1)} s`);

  const sql = createSql(database.url, { max: 1 });
  const table = sql(`${tenant.schema}.signals`);
  // The steady state of a log: vacuumed (BRIN ranges summarized, visibility map set) and analyzed.
  await sql`vacuum analyze ${table}`;
  // Times inside the log: a bound near its end (recent) and one near its start (old).
  const [bounds] = await sql<{ late: string; early: string; deep: string }[]>`
    select (select to_char(recorded_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS') from ${table} order by tx_id, seq offset ${Math.floor(SIGNALS * 0.95)} limit 1) as late,
           (select to_char(recorded_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS') from ${table} order by tx_id, seq offset ${Math.floor(SIGNALS * 0.02)} limit 1) as early,
           (select lpad(to_hex((tx_id::text)::bigint), 16, '0') || lpad(to_hex(seq), 16, '0') from ${table} order by tx_id, seq offset ${Math.floor(SIGNALS * 0.9)} limit 1) as deep`;
  const cases: Case[] = [
    { name: 'first page', query: {}, api: true },
    { name: 'deep cursor (90 %)', query: { after: bounds!.deep }, api: true },
    { name: 'type order.* (common)', query: { type: 'order.*' }, api: true },
    { name: 'type audit.* (rare)', query: { type: 'audit.*' }, api: true },
    { name: 'type audit.rare (rare)', query: { type: 'audit.rare' }, api: true },
    { name: 'subject', query: { subject: 'customer:42' }, api: true },
    { name: 'correlation id', query: { correlation_id: `corr-${Math.floor(SIGNALS / 20)}` }, api: true },
    { name: 'type + subject', query: { type: 'order.*', subject: 'customer:42' }, api: true },
    { name: 'since (last 5 %)', query: { since: bounds!.late }, api: false },
    { name: 'before (first 2 %)', query: { before: bounds!.early }, api: false },
    { name: 'type audit.* + since', query: { type: 'audit.*', since: bounds!.late }, api: false },
    { name: 'subject + since', query: { subject: 'customer:42', since: bounds!.late }, api: false },
  ];

  if (process.env.BENCH_EXPLAIN === '1') await explainCases(database.url, tenant, cases);

  const server = await startServer(database.url, { LOG_LEVEL: 'warn', SIGNALBUS_ENCRYPTION_KEYS: masterKeys });
  try {
    const cookie = await signIn(server.url, secret);
    const consoleMs = (query: Record<string, string>) => timed(`${server.url}/console/orgs/bench/signals?${new URLSearchParams(query)}`, { cookie });
    const apiMs = (query: Record<string, string>) => timed(`${server.url}/v1/orgs/bench/signals?${new URLSearchParams({ limit: '50', ...query })}`, { authorization: `Bearer ${secret}` });
    // Warm both: plans prepared, pages cached.
    for (const item of cases) {
      await consoleMs(item.query);
      if (item.api) await apiMs(item.query);
    }
    const rows: Array<Record<string, string | number>> = [];
    let worst = 0;
    for (const item of cases) {
      const console_: number[] = [];
      const api: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        console_.push(await consoleMs(item.query));
        if (item.api) api.push(await apiMs(item.query));
      }
      worst = Math.max(worst, median(console_));
      rows.push({
        filter: item.name,
        'console ms (median)': median(console_).toFixed(1),
        'console max': Math.max(...console_).toFixed(1),
        'API ms (median)': item.api ? median(api).toFixed(1) : '—',
        'console / API': item.api ? (median(console_) / median(api)).toFixed(2) : '—',
      });
    }
    console.log(`console signals page, org of ${SIGNALS} signals, ${ROUNDS} requests per filter, signed in as an operator (API baseline: GET /v1/orgs/bench/signals?limit=50)`);
    printTable('ms per request', rows);
    console.log(`slowest median: ${worst.toFixed(1)} ms — target ${TARGET_MS} ms: ${worst < TARGET_MS ? 'met' : 'MISSED'}`);
  } finally {
    await server.stop();
    await sql.end();
    await database.stop();
  }
}

async function timed(url: string, headers: Record<string, string>): Promise<number> {
  const started = performance.now();
  const response = await fetch(url, { headers });
  await response.text();
  const elapsed = performance.now() - started;
  if (response.status !== 200) throw new Error(`${url} answered ${response.status}`);
  return elapsed;
}

/** Signs in the way a browser does; returns the session cookie. */
async function signIn(base: string, key: string): Promise<string> {
  const form = await fetch(`${base}/console/sign-in`);
  const html = await form.text();
  const csrf = /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
  const signInCookie = form.headers.getSetCookie().map((line) => line.split(';')[0]).join('; ');
  const response = await fetch(`${base}/console/sign-in`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: signInCookie },
    body: new URLSearchParams({ _csrf: csrf ?? '', api_key: key }).toString(),
  });
  const session = response.headers.getSetCookie().find((line) => line.startsWith('sb_console='));
  if (response.status !== 303 || !session) throw new Error(`console sign-in answered ${response.status}`);
  return session.split(';')[0]!;
}

/** EXPLAIN ANALYZE of the page read each case runs, captured from the driver and run again. */
async function explainCases(url: string, tenant: { schema: string; id: string; slug: string }, cases: Case[]): Promise<void> {
  const captured: Array<{ query: string; parameters: unknown[] }> = [];
  const sql = postgres(url, {
    max: 1,
    onnotice: () => {},
    debug: (_connection, query, parameters) => {
      captured.push({ query, parameters });
    },
  });
  try {
    for (const item of cases) {
      const filter: SignalFilter = {};
      const types = parseTypeFilter(item.query.type);
      if (types) filter.types = types;
      if (item.query.subject) filter.subject = item.query.subject;
      if (item.query.correlation_id) filter.correlationId = item.query.correlation_id;
      if (item.query.since) filter.recordedFrom = new Date(`${item.query.since}Z`);
      if (item.query.before) filter.recordedBefore = new Date(`${item.query.before}Z`);
      captured.length = 0;
      await listSignals(sql, tenant as never, { ...(item.query.after ? { after: decodeCursor(item.query.after) } : {}), limit: 50, maxBytes: 1024 * 1024, filter });
      // The statements the page ran, each explained (the list grows with the explains themselves: take a copy first).
      for (const statement of [...captured]) {
        const plan = await sql.unsafe(`explain (analyze, buffers, costs off) ${statement.query}`, statement.parameters as never[]);
        console.log(`\n— ${item.name}\n${plan.map((row) => row['QUERY PLAN']).join('\n')}`);
      }
    }
  } finally {
    await sql.end();
  }
}
