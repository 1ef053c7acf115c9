/**
 * The commit-ordered cursor under concurrent writers (ARCHITECTURE.md,
 * Ordering and cursors). Writers hold transactions open for random times, so
 * rows commit out of `seq` order; a tailing reader through the list API and
 * one through SSE must each see every signal exactly once, in position order.
 * A naive reader that pages by `seq` alone runs in the same scenario and must
 * be caught skipping — proof that the scenario can detect a skip at all.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Actor } from '../../src/signals/actor.ts';
import { createSql, type Sql } from '../../src/db/client.ts';
import { withTransaction } from '../../src/db/transaction.ts';
import { emit, type EmitContext, type EmitDeps } from '../../src/signals/emit.ts';
import { BEGINNING, decodeCursor, type Cursor, type Signal } from '../../src/signals/model.ts';
import { hasSignalsAfter, readSignalsAfter } from '../../src/signals/read.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, listen, waitFor, type TestApp } from '../support/harness.ts';
import { openSse, signalsOf } from '../support/sse.ts';

const WRITERS = 8;
const PER_WRITER = 250;
const ACTOR: Actor = { type: 'system', id: 'cursor-test' };

let t: TestApp;
let writerSql: Sql;
let deps: EmitDeps;

beforeAll(async () => {
  t = await createTestApp();
  // Writers get their own pool, big enough that every writer can hold a
  // transaction open at once without starving the app's readers.
  writerSql = createSql(t.database.url, { max: 12, applicationName: 'cursor-test-writers' });
  deps = {
    sql: writerSql,
    projections: t.app.deps.projections,
    // The app's notifier: each commit's afterCommit hook wakes its tailers.
    notifier: t.app.deps.notifier,
    maxPayloadBytes: t.app.deps.maxPayloadBytes,
  };
});
afterAll(async () => {
  await writerSql?.end({ timeout: 5 });
  await t?.close();
});

const ctxFor = (tenant: Tenant): EmitContext => ({ tenant, actor: ACTOR, source: 'system' });

/** Emits one signal in its own transaction, keeping it open until `hold` resolves. */
async function emitHeld(tenant: Tenant, input: object, hold: (signal: Signal) => Promise<unknown>): Promise<Signal> {
  return withTransaction(writerSql, undefined, async (tx) => {
    const { signal } = await emit(deps, { ctx: { ...ctxFor(tenant), tx }, input });
    await hold(signal);
    return signal;
  });
}

/** Pages by `seq` alone — the bug the commit-ordered cursor exists to prevent. */
function naiveReader(schema: string) {
  let last = 0n;
  const seen = new Map<string, bigint>();
  return {
    seen,
    get last() {
      return last;
    },
    async poll(): Promise<Array<{ seq: bigint; id: string }>> {
      const rows = await t.app.deps.sql<{ seq: string; id: string }[]>`
        select seq::text, id from ${t.app.deps.sql(`${schema}.signals`)} where seq > ${last.toString()}::bigint order by seq`;
      const page = rows.map((row) => ({ seq: BigInt(row.seq), id: row.id }));
      for (const row of page) {
        seen.set(row.id, row.seq);
        if (row.seq > last) last = row.seq;
      }
      return page;
    },
  };
}

const seqOf = (position: string) => BigInt(`0x${position.slice(16)}`);

function expectExactlyOnceInOrder(received: Array<{ id: string; position: string }>, expected: Set<string>, who: string) {
  const ids = received.map((signal) => signal.id);
  expect(new Set(ids).size, `${who}: duplicates`).toBe(ids.length);
  const missing = [...expected].filter((id) => !ids.includes(id));
  expect(missing, `${who}: skipped signals`).toEqual([]);
  const unexpected = ids.filter((id) => !expected.has(id));
  expect(unexpected, `${who}: unexpected signals`).toEqual([]);
  for (let index = 1; index < received.length; index++) {
    const [before, after] = [received[index - 1]!.position, received[index]!.position];
    if (!(before < after)) expect.fail(`${who}: position ${after} at #${index} does not follow ${before}`);
  }
  expect(ids).toHaveLength(expected.size);
}

/** A page as a tail sees it: the rows, and whether committed rows wait past them. */
async function readPage(tenant: Tenant, cursor: Cursor, limit: number) {
  const rows = await readSignalsAfter(t.app.deps.sql, tenant, cursor, limit);
  const last = rows.at(-1);
  const heldBack = rows.length < limit && (await hasSignalsAfter(t.app.deps.sql, tenant, last ? decodeCursor(last.position) : cursor));
  return { rows, heldBack };
}

describe('commit-ordered cursor', () => {
  it('a cursor reader waits for an older open transaction instead of skipping it; a seq reader skips it', async () => {
    const tenant = await t.createOrg('cursor_small');
    const naive = naiveReader(tenant.schema);
    await naive.poll(); // past org.created
    // Another test file's transaction may hold the horizon back for a moment.
    const start = await waitFor(async () => {
      const page = await readPage(tenant, BEGINNING, 100);
      return page.heldBack ? undefined : page.rows;
    }, 10_000, 'org.created below the horizon');
    let cursor = decodeCursor(start.at(-1)!.position);

    let releaseA!: () => void;
    const aReleased = new Promise<void>((resolve) => (releaseA = resolve));
    let aInserted!: (signal: Signal) => void;
    const aRow = new Promise<Signal>((resolve) => (aInserted = resolve));
    const aCommitted = emitHeld(tenant, { type: 'test.held', payload: { tx: 'A' } }, async (signal) => {
      aInserted(signal);
      await aReleased;
    });
    let a: Signal;
    let b: Signal;
    try {
      a = await aRow;
      ({ signal: b } = await emit(deps, { ctx: ctxFor(tenant), input: { type: 'test.quick', payload: { tx: 'B' } } }));

      // A inserted first, so it holds both the lower seq and the older transaction.
      expect(seqOf(a.position)).toBeLessThan(seqOf(b.position));
      expect(a.position < b.position).toBe(true);

      // B is committed but sits above the horizon A holds back: nothing yet.
      const whileOpen = await readPage(tenant, cursor, 100);
      expect(whileOpen.rows).toEqual([]);
      expect(whileOpen.heldBack).toBe(true);
      // Paging by seq sees B and moves past A's seq.
      expect((await naive.poll()).map((row) => row.id)).toEqual([b.id]);
    } finally {
      // Never leave A open: it would hold the horizon back for everyone.
      releaseA();
      await aCommitted;
    }

    const delivered = await waitFor(async () => {
      const page = await readPage(tenant, cursor, 100);
      return page.rows.length >= 2 ? page.rows : undefined;
    }, 10_000, 'A and B below the horizon');
    expect(delivered.map((row) => row.id)).toEqual([a.id, b.id]);
    cursor = decodeCursor(delivered.at(-1)!.position);
    expect((await readPage(tenant, cursor, 100)).rows).toEqual([]);

    // The seq reader never sees A: it is already past A's seq.
    expect(await naive.poll()).toEqual([]);
    expect(naive.seen.has(a.id)).toBe(false);
    expect(naive.seen.has(b.id)).toBe(true);
  });

  it(`${WRITERS} concurrent writers × ${PER_WRITER}: list and SSE tailers see each signal once, in order; a seq reader skips`, async () => {
    const tenant = await t.createOrg('cursor_load');
    const key = await t.createKey(tenant, 'viewer');
    const authorization = `Bearer ${key}`;
    const server = await listen(t.app);
    const sse = await openSse(`${server.url}/v1/orgs/${tenant.slug}/stream?after=0`, { authorization });
    let writing = true;
    let stopReaders = false;
    const failures: unknown[] = [];
    // Everything running in the background, awaited before the pools close.
    const background: Array<Promise<unknown>> = [];
    try {
      expect(sse.status).toBe(200);
      // What provisioning and key creation already logged (org.created, the key's signal).
      const before = await waitFor(async () => {
        const page = await readPage(tenant, BEGINNING, 10);
        return page.heldBack ? undefined : page.rows;
      }, 10_000, 'setup signals below the horizon');
      expect(before[0]?.type).toBe('org.created');
      const expected = new Set<string>(before.map((row) => row.id));
      const setupCount = expected.size;

      // (a) Tailing the list API over the socket, continuing from next_cursor.
      const listed: Array<{ id: string; position: string }> = [];
      let pagesWhileWriting = 0;
      let sentinelId: string | undefined;
      const listReader = (async () => {
        let after = '0';
        while (!stopReaders) {
          const response = await fetch(`${server.url}/v1/orgs/${tenant.slug}/signals?after=${after}&limit=97`, {
            headers: { authorization },
          });
          if (response.status !== 200) throw new Error(`list answered ${response.status}: ${await response.text()}`);
          const page = (await response.json()) as { data: Signal[]; next_cursor: string | null; has_more: boolean };
          listed.push(...page.data);
          if (page.data.length > 0 && writing) pagesWhileWriting++;
          after = page.next_cursor ?? after;
          if (sentinelId && listed.some((signal) => signal.id === sentinelId)) return;
          // A tailing client's poll interval, not synchronization.
          if (!page.has_more) await sleep(3);
        }
      })().catch((error) => failures.push(error));
      background.push(listReader);

      // (c) The naive reader, polling every few ms.
      const naive = naiveReader(tenant.schema);
      const naiveLoop = (async () => {
        while (!stopReaders) {
          await naive.poll();
          await sleep(2);
        }
      })().catch((error) => failures.push(error));
      background.push(naiveLoop);

      // Writer 0 holds three of its transactions open until the naive reader
      // has moved past their seq, which the others' commits make it do.
      // Without that the skip would depend on timing; with it, it is certain.
      const longHolds = new Set([5, 60, 120]);
      const longHeld: string[] = [];
      const writers = Array.from({ length: WRITERS }, async (_, writer) => {
        for (let index = 0; index < PER_WRITER; index++) {
          const input = { type: `load.w${writer}`, subject: `writer:${writer}`, payload: { writer, index } };
          let signal: Signal;
          if (writer === 0 && longHolds.has(index)) {
            signal = await emitHeld(tenant, input, async (held) => {
              longHeld.push(held.id);
              const seq = seqOf(held.position);
              await sleep(300);
              await waitFor(() => naive.last > seq, 10_000, 'the naive reader to pass a held seq').catch(() => {});
            });
          } else if (Math.random() < 0.5) {
            signal = await emitHeld(tenant, input, () => sleep(Math.random() * 50));
          } else {
            signal = (await emit(deps, { ctx: ctxFor(tenant), input })).signal;
          }
          expected.add(signal.id);
        }
      });
      background.push(...writers);
      await Promise.all(writers);
      writing = false;

      // A last signal after every writer has committed: once a reader has it,
      // it has had its chance at everything before it.
      const { signal: sentinel } = await emit(deps, {
        ctx: ctxFor(tenant),
        input: { type: 'load.done', payload: {} },
      });
      sentinelId = sentinel.id;
      expected.add(sentinel.id);
      expect(expected.size).toBe(setupCount + WRITERS * PER_WRITER + 1);

      await waitFor(() => listed.some((signal) => signal.id === sentinel.id) || failures.length > 0, 20_000, 'the list reader to reach the last signal');
      await waitFor(() => signalsOf(sse).some(({ signal }) => signal.id === sentinel.id) || sse.ended, 20_000, 'the SSE reader to reach the last signal');
      await waitFor(() => naive.seen.has(sentinel.id), 20_000, 'the naive reader to reach the last signal');
      stopReaders = true;
      await Promise.all([listReader, naiveLoop]);
      expect(failures).toEqual([]);
      expect(sse.error).toBeUndefined();

      // (a) list API: every signal exactly once, in strictly increasing position order.
      expectExactlyOnceInOrder(listed, expected, 'list reader');
      // It really tailed: it read pages while the writers were still writing.
      expect(pagesWhileWriting).toBeGreaterThan(3);

      // (b) SSE: the same, and each event's id is the signal's position.
      const streamed = signalsOf(sse);
      for (const { id, signal } of streamed) expect(id).toBe(signal.position);
      expectExactlyOnceInOrder(streamed.map(({ signal }) => signal), expected, 'SSE reader');

      // (c) The naive reader skipped signals — at least the ones held open on
      // purpose: rows did commit out of seq order, which is what the cursor is for.
      const skipped = [...expected].filter((id) => !naive.seen.has(id));
      expect(skipped.length).toBeGreaterThan(0);
      expect(longHeld).toHaveLength(3);
      for (const id of longHeld) expect(skipped).toContain(id);
      const [stored] = await t.app.deps.sql<{ n: number }[]>`select count(*)::int as n from ${t.app.deps.sql(`${tenant.schema}.signals`)}`;
      expect(stored!.n).toBe(expected.size);
    } finally {
      stopReaders = true;
      await Promise.allSettled(background);
      await sse.close();
      await server.close();
    }
  });
});
