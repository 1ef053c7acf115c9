/**
 * The SSE stream (API.md, `GET /v1/orgs/:org/stream`) over a real socket:
 * cursors as event ids, resuming with Last-Event-ID, type filters,
 * heartbeats, "from now" without a cursor, prompt wake-ups from the notifier
 * (in process and across processes through LISTEN/NOTIFY), and one LISTEN
 * connection per process however many subscribers there are.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.ts';
import { parseConfig } from '../../src/config.ts';
import { createSql } from '../../src/db/client.ts';
import { emit } from '../../src/signals/emit.ts';
import { createLogNotifier } from '../../src/signals/log-notifier.ts';
import { decodeCursor } from '../../src/signals/model.ts';
import { hasSignalsAfter } from '../../src/signals/read.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createTestApp, listen, NO_RATE_LIMITS, waitFor, type TestApp } from '../support/harness.ts';
import { openSse, signalsOf, type SseClient } from '../support/sse.ts';

let t: TestApp;
let server: Awaited<ReturnType<typeof listen>>;
let org: Tenant;
let operator: string;
let viewer: string;

beforeAll(async () => {
  // The default heartbeat (15 s) is far longer than any wait below, so a
  // prompt delivery can only come from a wake-up, not from the idle timer.
  t = await createTestApp();
  server = await listen(t.app);
  org = await t.createOrg('stream');
  operator = await t.createKey(org, 'operator');
  viewer = await t.createKey(org, 'viewer');
});
afterAll(async () => {
  await server?.close();
  await t?.close();
});

const streamUrl = (query = '') => `${server.url}/v1/orgs/${org.slug}/stream${query}`;
const auth = () => ({ authorization: `Bearer ${viewer}` });

type Posted = { id: string; position: string; type: string };

async function post(type: string, payload: Record<string, unknown> = {}): Promise<Posted> {
  const response = await t.request('POST', `/v1/orgs/${org.slug}/signals`, { key: operator, body: { type, payload } });
  expect(response.status).toBe(201);
  return response.body.signal as Posted;
}

/** The newest position in the log, as a client would hold it. */
/**
 * The position of the org's last signal, once every committed one is below
 * the horizon — another file's open transaction may hold some back a moment,
 * and a cursor taken then would have them delivered as new.
 */
async function latestPosition(): Promise<string> {
  return waitFor(async () => {
    const response = await t.request('GET', `/v1/orgs/${org.slug}/signals?after=0&limit=1000`, { key: viewer });
    expect(response.status).toBe(200);
    expect(response.body.has_more).toBe(false);
    const cursor: string | null = response.body.next_cursor;
    // No cursor yet: the org's signals are all still above the horizon.
    if (cursor === null) return undefined;
    return (await hasSignalsAfter(t.app.deps.sql, org, decodeCursor(cursor))) ? undefined : cursor;
  }, 10_000, 'every committed signal below the horizon');
}

/** Resolves once the stream has opened: the route has taken its starting cursor. */
const connected = (client: SseClient) =>
  waitFor(() => client.comments.some((comment) => comment.text === 'connected') || client.ended, 10_000, 'the stream to open');

const received = (client: SseClient) => signalsOf(client).map(({ signal }) => signal.id);

const receivedIncluding = (client: SseClient, id: string, what = 'a signal on the stream') =>
  waitFor(() => (received(client).includes(id) ? received(client) : client.ended && expect.fail('stream ended')), 10_000, what);

const arrivalOf = (client: SseClient, id: string) =>
  client.events.find((event) => event.event === 'signal' && JSON.parse(event.data).id === id)!.at;

async function withStream<T>(url: string, headers: Record<string, string>, fn: (client: SseClient) => Promise<T>): Promise<T> {
  const client = await openSse(url, headers);
  try {
    expect(client.status).toBe(200);
    await connected(client);
    return await fn(client);
  } finally {
    await client.close();
  }
}

describe('SSE stream', () => {
  it('sends each signal as `event: signal` with its position as `id`', async () => {
    const after = await latestPosition();
    await withStream(streamUrl(`?after=${after}`), auth(), async (client) => {
      expect(client.contentType).toContain('text/event-stream');
      const sent = [await post('note.created', { n: 1 }), await post('note.updated', { n: 2 }), await post('note.deleted', { n: 3 })];
      await receivedIncluding(client, sent[2]!.id);
      const events = client.events;
      expect(events.map((event) => event.event)).toEqual(['signal', 'signal', 'signal']);
      const signals = signalsOf(client);
      expect(signals.map(({ signal }) => signal.id)).toEqual(sent.map((signal) => signal.id));
      for (const { id, signal } of signals) {
        expect(id).toMatch(/^[0-9a-f]{32}$/);
        expect(id).toBe(signal.position);
      }
      expect(signals[0]!.signal).toMatchObject({ type: 'note.created', payload: { n: 1 }, actor: { id: `operator@stream.test` } });
      expect(signals[0]!.id! < signals[1]!.id! && signals[1]!.id! < signals[2]!.id!).toBe(true);
    });
  });

  it('resumes after Last-Event-ID with nothing skipped or repeated', async () => {
    const start = await latestPosition();
    const first: Posted[] = [];
    for (let index = 0; index < 6; index++) first.push(await post('resume.tick', { index }));
    // The client processes three events, then the connection drops.
    const lastSeen = await withStream(streamUrl(`?after=${start}`), auth(), async (client) => {
      await receivedIncluding(client, first[2]!.id);
      return signalsOf(client)[2]!.id!;
    });
    expect(lastSeen).toBe(first[2]!.position);

    // More arrives while the client is away.
    const whileAway: Posted[] = [];
    for (let index = 6; index < 10; index++) whileAway.push(await post('resume.tick', { index }));

    // EventSource sends the last id it saw; `after` in the URL loses to it.
    await withStream(streamUrl(`?after=${start}`), { ...auth(), 'last-event-id': lastSeen }, async (client) => {
      const last = whileAway.at(-1)!;
      await receivedIncluding(client, last.id);
      const live = await post('resume.tick', { index: 10 });
      const ids = await receivedIncluding(client, live.id);
      expect(ids).toEqual([...first.slice(3), ...whileAway, live].map((signal) => signal.id));
    });
  });

  it('filters by exact type and by prefix.*', async () => {
    const start = await latestPosition();
    const log: Array<{ id: string; type: string }> = [];
    for (const type of ['order.placed', 'order.shipped', 'orders.archived', 'user.created', 'order.placed', 'a_b.created', 'axb.created']) {
      log.push(await post(type));
    }
    // The test's own reading of the filter syntax, to compare against.
    const matches = (filter: string, type: string) =>
      filter.split(',').some((part) => (part.endsWith('.*') ? type.startsWith(part.slice(0, -1)) : type === part));
    const cases: Array<[filter: string, flushType: string, expectedTypes: string[]]> = [
      ['order.placed', 'order.placed', ['order.placed']],
      ['order.*', 'order.returned', ['order.placed', 'order.shipped', 'order.returned']],
      ['order.shipped,user.*', 'user.deleted', ['order.shipped', 'user.created', 'user.deleted']],
      // `_` in a type is a literal, not a LIKE wildcard: axb.created must not match.
      ['a_b.*', 'a_b.updated', ['a_b.created', 'a_b.updated']],
    ];
    for (const [filter, flushType, expectedTypes] of cases) {
      await withStream(streamUrl(`?after=${start}&types=${encodeURIComponent(filter)}`), auth(), async (client) => {
        // Events arrive in position order, so once this last one is in, every
        // earlier signal the filter lets through is in too.
        const flush = await post(flushType);
        log.push(flush);
        const got = await receivedIncluding(client, flush.id, `the ${filter} stream to reach its last signal`);
        const expected = log.filter((signal) => matches(filter, signal.type));
        expect(got, filter).toEqual(expected.map((signal) => signal.id));
        expect(new Set(signalsOf(client).map(({ signal }) => signal.type)), filter).toEqual(new Set(expectedTypes));
      });
    }
    const invalid = await fetch(streamUrl('?types=Not%20A%20Type'), { headers: auth() });
    expect(invalid.status).toBe(422);
    await invalid.body?.cancel();
  });

  it('sends a heartbeat comment while idle', async () => {
    const app = await createApp(parseConfig({ ...NO_RATE_LIMITS, SIGNALBUS_SSE_HEARTBEAT_SECONDS: '0.2', LOG_LEVEL: 'silent' }), {
      databaseUrl: t.database.url,
      logger: createLogger('silent'),
    });
    const other = await listen(app);
    try {
      const client = await openSse(`${other.url}/v1/orgs/${org.slug}/stream`, auth());
      try {
        await connected(client);
        const opened = Date.now();
        await waitFor(() => client.comments.filter((comment) => comment.text === 'heartbeat').length >= 3, 5_000, 'three heartbeats');
        const beats = client.comments.filter((comment) => comment.text === 'heartbeat');
        // Three beats at 0.2 s take about 0.6 s; well under the 15 s default.
        expect(beats[2]!.at - opened).toBeLessThan(3_000);
        expect(client.events).toEqual([]);
      } finally {
        await client.close();
      }
    } finally {
      await other.close();
      await app.close();
    }
  });

  it('starts at the present without a cursor', async () => {
    const before = await post('present.before');
    await withStream(streamUrl(), auth(), async (client) => {
      const after = await post('present.after');
      expect(await receivedIncluding(client, after.id)).toEqual([after.id]);
      expect(received(client)).not.toContain(before.id);
    });
  });

  it('starts at the present even while an older transaction holds the horizon back', async () => {
    // Another transaction — any, in any database of the server — that took
    // an xid before `before` committed keeps `before` above the horizon.
    const blocker = createSql(t.database.url, { max: 1, applicationName: 'stream-test-blocker' });
    try {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let started!: () => void;
      const holding = new Promise<void>((resolve) => (started = resolve));
      const blocking = blocker.begin(async (tx) => {
        await tx`select pg_current_xact_id()`;
        started();
        await released;
      });
      await holding;
      const before = await post('present.before');
      await withStream(streamUrl(), auth(), async (client) => {
        const after = await post('present.after');
        release();
        await blocking;
        const ids = await receivedIncluding(client, after.id);
        expect(ids, 'a signal committed before connecting was streamed').toEqual([after.id]);
        expect(ids).not.toContain(before.id);
      });
    } finally {
      await blocker.end({ timeout: 5 });
    }
  });

  it('delivers a new signal promptly, woken by the notifier rather than a timer', async () => {
    await withStream(streamUrl(), auth(), async (client) => {
      const latencies: number[] = [];
      for (let index = 0; index < 5; index++) {
        const sentAt = Date.now();
        const signal = await post('latency.probe', { index });
        await receivedIncluding(client, signal.id);
        latencies.push(arrivalOf(client, signal.id) - sentAt);
      }
      // The idle timer is 15 s; only a wake-up explains sub-second delivery.
      expect(Math.max(...latencies), `latencies ${latencies.join(', ')} ms`).toBeLessThan(1_000);
    });
  });

  it('delivers promptly while transactions that are not emits keep moving the horizon', async () => {
    // Short overlapping transactions with xids, like any other work on the
    // server: they hold the horizon back and end without waking anyone, so a
    // tail must notice for itself when the horizon passes a waiting signal.
    const churnSql = createSql(t.database.url, { max: 6, applicationName: 'stream-test-churn' });
    let churning = true;
    const churners = Array.from({ length: 6 }, async () => {
      while (churning) {
        await churnSql.begin(async (tx) => {
          await tx`select pg_current_xact_id()`;
          await sleep(Math.random() * 15);
        });
      }
    });
    try {
      await withStream(streamUrl(), auth(), async (client) => {
        const latencies: number[] = [];
        for (let index = 0; index < 50; index++) {
          const sentAt = Date.now();
          const signal = await post('churn.probe', { index });
          await receivedIncluding(client, signal.id, `probe ${index} despite the churn`);
          latencies.push(arrivalOf(client, signal.id) - sentAt);
        }
        expect(Math.max(...latencies), `latencies ${latencies.join(', ')} ms`).toBeLessThan(1_500);
      });
    } finally {
      churning = false;
      await Promise.allSettled(churners);
      await churnSql.end({ timeout: 5 });
    }
  });

  it('serves 50 subscribers from one LISTEN connection, all receiving each signal', async () => {
    const clients = await Promise.all(Array.from({ length: 50 }, () => openSse(streamUrl(), auth())));
    try {
      for (const client of clients) expect(client.status).toBe(200);
      await Promise.all(clients.map(connected));
      const signal = await post('fanout.ping');
      await Promise.all(clients.map((client) => receivedIncluding(client, signal.id, 'the signal at every subscriber')));
      for (const client of clients) expect(received(client)).toEqual([signal.id]);

      // postgres.js keeps LISTEN on a connection of its own; its last query
      // stays `listen "signalbus_log"`. The other apps of this file are
      // closed, but their backends may take a moment to exit.
      const listeners = async () => {
        const [row] = await t.app.deps.sql<{ n: number }[]>`
          select count(*)::int as n from pg_stat_activity
           where datname = ${t.database.name} and query ilike 'listen%'`;
        return row!.n;
      };
      await waitFor(async () => (await listeners()) === 1, 5_000, 'one LISTEN connection').catch(() => {});
      expect(await listeners()).toBe(1);
    } finally {
      await Promise.all(clients.map((client) => client.close()));
    }
  });

  it('wakes a subscriber for a signal emitted by another process, through LISTEN/NOTIFY', async () => {
    await withStream(streamUrl(), auth(), async (client) => {
      // A second process on the same database: its own pool and notifier.
      const app = await createApp(parseConfig({ ...NO_RATE_LIMITS, LOG_LEVEL: 'silent' }), {
        databaseUrl: t.database.url,
        logger: createLogger('silent'),
      });
      try {
        const sentAt = Date.now();
        const response = await app.http.request(`/v1/orgs/${org.slug}/signals`, {
          method: 'POST',
          headers: { authorization: `Bearer ${operator}`, 'content-type': 'application/json' },
          body: JSON.stringify({ type: 'remote.app', payload: {} }),
        });
        expect(response.status).toBe(201);
        const { signal } = (await response.json()) as { signal: { id: string } };
        await receivedIncluding(client, signal.id, 'the other app’s signal');
        expect(arrivalOf(client, signal.id) - sentAt).toBeLessThan(1_000);
      } finally {
        await app.close();
      }

      // And a bare emitter: a separate pool with its own notifier, no app.
      const sql = createSql(t.database.url, { max: 2, applicationName: 'stream-test-remote' });
      const notifier = createLogNotifier({ sql });
      try {
        const sentAt = Date.now();
        const { signal } = await emit(
          { sql, notifier, projections: t.app.deps.projections, maxPayloadBytes: t.app.deps.maxPayloadBytes },
          { ctx: { tenant: org, actor: { type: 'system', id: 'remote' }, source: 'system' }, input: { type: 'remote.raw', payload: {} } },
        );
        await receivedIncluding(client, signal.id, 'the raw emitter’s signal');
        expect(arrivalOf(client, signal.id) - sentAt).toBeLessThan(1_000);
      } finally {
        await notifier.close();
        await sql.end({ timeout: 5 });
      }
    });
  });
});
