/**
 * Edge: what hostile or heavy requests cost a `signalbus serve` process —
 * a 30 MB body of `[` sent to the batch route, and four concurrent
 * `GET …/signals?limit=1000` pages over signals carrying 250 KiB payloads.
 * Reports wall time, the server's resident set growth (VmHWM over the
 * idle VmRSS) and how long another org's small read waited meanwhile.
 */
import { readFile } from 'node:fs/promises';
import { createApp } from '../../src/app.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { createApiKey } from '../../src/auth/api-keys.ts';
import { parseConfig } from '../../src/config.ts';
import { migratePublicSchema } from '../../src/db/migrate.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { provisionOrg } from '../../src/tenancy/provision.ts';
import { benchDatabase, printTable, startServer, type ServerProcess } from './support.ts';

const BIG_ROWS = Number(process.env.BENCH_BIG_ROWS ?? 1000);
const PAYLOAD_CHARS = 250 * 1024;

async function rssMiB(server: ServerProcess, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${server.child.pid}/status`, 'utf8');
  return Math.round(Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024);
}

/** Reads a response to its end without keeping it, returning its status and size. */
async function drain(response: Response): Promise<{ status: number; bytes: number; text: string }> {
  let bytes = 0;
  let head = '';
  const reader = response.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.length;
    if (head.length < 400) head += Buffer.from(value).toString('utf8', 0, 400);
  }
  return { status: response.status, bytes, text: head.slice(0, 400) };
}

/** Polls another org's small page while `work` runs; returns the slowest answer in ms. */
async function slowestNeighbour(url: string, key: string, work: Promise<unknown>): Promise<number> {
  let done = false;
  void work.finally(() => (done = true)).catch(() => {});
  let slowest = 0;
  while (!done) {
    const started = performance.now();
    try {
      await drain(await fetch(`${url}/v1/orgs/quiet/signals?limit=1`, { headers: { authorization: `Bearer ${key}` } }));
    } catch (error) {
      console.error('neighbour read failed', (error as Error).cause ?? error);
    }
    slowest = Math.max(slowest, performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Math.round(slowest);
}

export async function runEdgeBench(): Promise<void> {
  const database = await benchDatabase();
  await migratePublicSchema(database.url);
  const setup = await createApp(parseConfig({ LOG_LEVEL: 'warn' }), { databaseUrl: database.url, logger: createLogger('warn') });
  const { tenant } = await provisionOrg(setup.deps, { input: { slug: 'bench', name: 'Bench' } });
  const { tenant: quiet } = await provisionOrg(setup.deps, { input: { slug: 'quiet', name: 'Quiet' } });
  const key = async (org: typeof tenant) =>
    (
      await createApiKey(setup.deps, {
        tenant: org,
        input: { name: 'bench', role: 'operator', actor: { type: 'human', id: 'bench@acme.test' } },
        by: PLATFORM_ACTOR,
      })
    ).secret;
  const secret = await key(tenant);
  const quietKey = await key(quiet);
  // 250 KiB payloads written straight into the log (the emit path is not what is measured).
  await setup.deps.sql.unsafe(`
    insert into ${tenant.schema}.signals (id, type, payload, actor, source, dedupe_key, payload_hash, occurred_at)
    select 'sig_big' || i, 'bench.big', jsonb_build_object('blob', repeat(md5(i::text), ${PAYLOAD_CHARS / 32})),
           '{"type":"system","id":"bench"}', 'system', 'big-' || i, md5(i::text), now()
      from generate_series(1, ${BIG_ROWS}) as i`);
  await setup.close();

  const rows: Array<Record<string, string | number>> = [];
  const headers = { authorization: `Bearer ${secret}`, 'content-type': 'application/json' };

  let server = await startServer(database.url);
  server.child.once('exit', (code, signal) => console.error('server exited', code, signal));
  try {
    const idle = await rssMiB(server, 'VmRSS');
    const bomb = Buffer.alloc(30 * 1024 * 1024, '[');
    const started = performance.now();
    const sending = fetch(`${server.url}/v1/orgs/bench/signals/batch`, { method: 'POST', headers, body: bomb }).then(drain);
    const neighbourMs = await slowestNeighbour(server.url, quietKey, sending);
    const answer = await sending;
    rows.push({
      case: '30 MB of [ to signals/batch',
      status: answer.status,
      ms: Math.round(performance.now() - started),
      idle_rss_mib: idle,
      added_peak_rss_mib: (await rssMiB(server, 'VmHWM')) - idle,
      neighbour_max_ms: neighbourMs,
    });
  } finally {
    await server.stop();
  }

  server = await startServer(database.url);
  try {
    const idle = await rssMiB(server, 'VmRSS');
    const started = performance.now();
    const pages = Promise.all(
      Array.from({ length: 4 }, async () => drain(await fetch(`${server.url}/v1/orgs/bench/signals?limit=1000`, { headers }))),
    );
    const neighbourMs = await slowestNeighbour(server.url, quietKey, pages);
    const answers = await pages;
    rows.push({
      case: `4 × GET signals?limit=1000 (${BIG_ROWS} × 250 KiB rows)`,
      status: answers.map((page) => page.status).join('/'),
      ms: Math.round(performance.now() - started),
      idle_rss_mib: idle,
      added_peak_rss_mib: (await rssMiB(server, 'VmHWM')) - idle,
      neighbour_max_ms: neighbourMs,
      page_mib: Math.round(answers[0]!.bytes / 1024 / 1024),
    });
  } finally {
    await server.stop();
  }
  await database.stop();
  printTable('edge: hostile and heavy requests against one serve process', rows);
}
