/**
 * Bodies and pages are bounded where they cost memory: measured on a real
 * `signalbus serve` child process (its resident set read from /proc), since a
 * test's own process holds too much else to tell. A nesting bomb is refused
 * before it is parsed; pages of large signals stop at the byte budget and
 * hand out their cursor early, so four concurrent pages of limit=1000 stay
 * small — and paging on by cursor still returns every signal once, in order.
 */
import { request as httpRequest } from 'node:http';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type ServerProcess } from '../../scripts/bench/support.ts';
import { listSignals } from '../../src/signals/read.ts';
import { createLogBroadcast } from '../../src/signals/broadcast.ts';
import { BEGINNING, decodeCursor, parseTypeFilter } from '../../src/signals/model.ts';
import type { Tenant } from '../../src/tenancy/tenant.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

const BIG_ROWS = 160;
const PAYLOAD_CHARS = 250 * 1024;
const MiB = 1024 * 1024;

let t: TestApp;
let server: ServerProcess;
let org: Tenant;
let paged: Tenant;
const filter = { types: parseTypeFilter('bounds.paged')! };
let key: string;

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('bounds');
  key = await t.createKey(org, 'operator');
  // 250 KiB payloads written straight into the log: the emit path is not under test.
  await t.app.deps.sql.unsafe(`
    insert into ${org.schema}.signals (id, type, payload, actor, source, dedupe_key, payload_hash, occurred_at)
    select 'sig_big' || lpad(i::text, 4, '0'), 'bounds.big', jsonb_build_object('i', i, 'blob', repeat(md5(i::text), ${PAYLOAD_CHARS / 32})),
           '{"type":"system","id":"bounds"}', 'system', 'big-' || i, md5(i::text), now()
      from generate_series(1, ${BIG_ROWS}) as i`);
  paged = await t.createOrg('bounds_paged');
  await t.app.deps.sql.unsafe(`
    insert into ${paged.schema}.signals (id, type, payload, actor, source, dedupe_key, payload_hash, occurred_at)
    select 'sig_paged' || lpad(i::text, 4, '0'), 'bounds.paged', jsonb_build_object('i', i, 'blob', repeat('x', 8192 * (1 + i % 9))),
           '{"type":"system","id":"bounds"}', 'system', 'paged-' || i, md5(i::text), now()
      from generate_series(1, 40) as i`);
  await t.settle();
  server = await startServer(t.database.url, { LOG_LEVEL: 'warn' });
});
afterAll(async () => {
  await server?.stop();
  await t.close();
});

async function rssMiB(field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${server.child.pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024;
}

/** Posts `size` bytes of `[` in 64 KiB chunks, with or without a Content-Length; resolves with the answer. */
function postBomb(size: number, declareLength: boolean): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      `${server.url}/v1/orgs/bounds/signals/batch`,
      {
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          ...(declareLength ? { 'content-length': String(size) } : {}),
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()) }));
      },
    );
    // The server may answer and close before the whole body is sent.
    request.on('error', (error: NodeJS.ErrnoException) => (error.code === 'EPIPE' || error.code === 'ECONNRESET' ? undefined : reject(error)));
    const chunk = Buffer.alloc(64 * 1024, '[');
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        sent += chunk.length;
        if (!request.write(chunk)) return void request.once('drain', pump);
      }
      request.end();
    };
    pump();
  });
}

/** Reads a response to its end, keeping only what the test looks at. */
async function getPage(path: string): Promise<{ status: number; bytes: number; page: any }> {
  const response = await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${key}` } });
  const text = await response.text();
  return { status: response.status, bytes: Buffer.byteLength(text), page: JSON.parse(text) };
}

describe('request bodies', () => {
  it('refuses a 30 MB nesting bomb before parsing it, with and without a Content-Length, in bounded memory', async () => {
    const idle = await rssMiB('VmRSS');
    const declared = await postBomb(30 * MiB, true);
    expect(declared.status).toBe(413);
    expect(declared.body.code).toBe('payload_too_large');
    const streamed = await postBomb(30 * MiB, false);
    expect(streamed.status).toBe(422);
    expect(streamed.body.code).toBe('validation_failed');
    expect(streamed.body.detail).toMatch(/nests deeper than \d+ levels/);
    // Before: the whole body was buffered and parsed, growing the server by over 1 GB.
    expect((await rssMiB('VmHWM')) - idle).toBeLessThan(50);
  });
});

describe('signal pages', () => {
  it('stop at the byte budget: four concurrent limit=1000 pages of 250 KiB signals stay small', async () => {
    const idle = await rssMiB('VmRSS');
    const pages = await Promise.all(Array.from({ length: 4 }, () => getPage('/v1/orgs/bounds/signals?limit=1000&after=0')));
    for (const { status, bytes, page } of pages) {
      expect(status).toBe(200);
      expect(bytes).toBeLessThanOrEqual(2 * MiB);
      expect(page.data.length).toBeGreaterThan(1);
      expect(page.data.length).toBeLessThan(BIG_ROWS);
      expect(page.has_more).toBe(true);
      expect(page.next_cursor).toBe(page.data.at(-1).position);
    }
    // Before: each page held all 160 signals (40 MB of JSON), built in memory.
    expect((await rssMiB('VmHWM')) - idle).toBeLessThan(100);
  });

  // On smaller signals of varied sizes (8–72 KiB) and a 200 KiB budget, read in process.
  const PAGED = 40;
  const BUDGET = 200 * 1024;
  const inOrder = Array.from({ length: PAGED }, (_, i) => i + 1);

  it('hand out every signal once, in order, when paged on by cursor', async () => {
    const seen: number[] = [];
    let after = BEGINNING;
    for (let guard = 0; guard < PAGED; guard++) {
      const page = await listSignals(t.app.deps.sql, paged, { after, limit: 1000, maxBytes: BUDGET, filter });
      expect(Buffer.byteLength(JSON.stringify(page.data))).toBeLessThanOrEqual(BUDGET);
      seen.push(...page.data.map((signal) => (signal.payload as { i: number }).i));
      after = decodeCursor(page.next_cursor!);
      if (!page.has_more) break;
    }
    expect(seen).toEqual(inOrder);
  });

  it('always carry one signal, even one larger than the budget', async () => {
    const page = await listSignals(t.app.deps.sql, paged, { limit: 10, maxBytes: 1024, filter });
    expect(page.data).toHaveLength(1);
    expect(page.has_more).toBe(true);
  });

  it('bound the stream reads the same way, which still deliver everything', async () => {
    const broadcast = createLogBroadcast(t.app.deps, { maxPageBytes: BUDGET });
    const abort = new AbortController();
    const reads: number[][] = [];
    for await (const chunk of broadcast.follow({ tenant: paged, after: BEGINNING, types: filter.types, heartbeatMs: 60_000, abort: abort.signal })) {
      if (chunk.kind !== 'events') continue;
      expect(chunk.data.byteLength).toBeLessThanOrEqual(BUDGET);
      reads.push([...Buffer.from(chunk.data).toString('utf8').matchAll(/^data: (.*)$/gm)].map((line) => (JSON.parse(line[1]!) as { payload: { i: number } }).payload.i));
      if (reads.flat().length >= PAGED) abort.abort();
    }
    expect(reads.length).toBeGreaterThan(3);
    expect(reads.flat()).toEqual(inOrder);
  });
});
