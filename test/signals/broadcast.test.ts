/**
 * Live streams share their reads (signals/broadcast.ts): many subscribers of
 * one org over real sockets, joining before and during a burst of emits, each
 * receive every signal exactly once in order; a subscriber too slow for the
 * shared feed is dropped from it and catches up by cursor with nothing lost
 * or repeated; reconnecting with Last-Event-ID while emits continue resumes
 * exactly; concurrent streams are capped per key and per org (429).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.ts';
import { parseConfig } from '../../src/config.ts';
import { createLogBroadcast } from '../../src/signals/broadcast.ts';
import { decodeCursor } from '../../src/signals/model.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createTestApp, listen, waitFor, type TestApp } from '../support/harness.ts';
import { openSse, type SseClient } from '../support/sse.ts';

let t: TestApp;
let server: Awaited<ReturnType<typeof listen>>;
let org: Tenant;
let operator: string;
let viewer: string;

beforeAll(async () => {
  t = await createTestApp({ env: { SIGNALBUS_SSE_MAX_STREAMS_PER_KEY: '1000' } });
  server = await listen(t.app);
  org = await t.createOrg('broadcast');
  operator = await t.createKey(org, 'operator');
  viewer = await t.createKey(org, 'viewer');
});
afterAll(async () => {
  await server?.close();
  await t?.close();
});

const streamUrl = (query = '') => `${server.url}/v1/orgs/${org.slug}/stream${query}`;
const auth = () => ({ authorization: `Bearer ${viewer}` });

async function post(index: number, padding = ''): Promise<string> {
  const response = await t.request('POST', `/v1/orgs/${org.slug}/signals`, {
    key: operator,
    body: { type: 'burst.tick', payload: { index, padding } },
  });
  expect(response.status).toBe(201);
  return response.body.signal.position as string;
}

/** Emits `count` signals from `writers` concurrent callers; resolves to their positions in stream order. */
async function burst(count: number, writers = 4, onProgress?: (done: number) => void): Promise<string[]> {
  const positions: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (next < count) {
        positions.push(await post(next++));
        onProgress?.(positions.length);
      }
    }),
  );
  return positions.sort();
}

/** The end of the org's log once everything committed is below the horizon. */
async function head(): Promise<string> {
  await t.settle();
  const response = await t.request('GET', `/v1/orgs/${org.slug}/signals?after=0&limit=1000`, { key: viewer });
  expect(response.body.has_more).toBe(false);
  return response.body.next_cursor as string;
}

const positionsOf = (client: SseClient) => client.events.filter((event) => event.event === 'signal').map((event) => event.id!);
const connected = (client: SseClient) => waitFor(() => client.comments.some((comment) => comment.text === 'connected'), 20_000, 'the stream to open');

async function open(query: string, headers: Record<string, string> = {}): Promise<SseClient> {
  const client = await openSse(streamUrl(query), { ...auth(), ...headers });
  expect(client.status).toBe(200);
  await connected(client);
  return client;
}

/** Waits until every client holds `count` signals (or more: the comparison after shows extras). */
const allReceived = (clients: SseClient[], count: number) =>
  waitFor(() => clients.every((client) => positionsOf(client).length >= count || client.ended), 60_000, `${count} signals at every subscriber`);

describe('shared live streams', () => {
  it('delivers every signal exactly once, in order, to 300 subscribers of one org while emits continue', async () => {
    const start = await head();
    const clients: SseClient[] = [];
    try {
      // Half at the head before the burst; the rest join during it, from the
      // start: they catch up by cursor while the shared feed moves on.
      for (let index = 0; index < 150; index += 25) {
        clients.push(...(await Promise.all(Array.from({ length: 25 }, () => open(`?after=${start}`)))));
      }
      let joining: Promise<SseClient[]> | undefined;
      const positions = await burst(200, 4, (done) => {
        if (done !== 60) return;
        joining = Promise.all(
          Array.from({ length: 150 }, (_, index) => (index % 2 ? open(`?after=${start}`) : open('', { 'last-event-id': start }))),
        );
      });
      clients.push(...(await joining!));
      expect(clients).toHaveLength(300);
      // Events arrive in order, so once a last signal is in, all before it are.
      positions.push(await post(200));
      await allReceived(clients, positions.length);
      for (const [index, client] of clients.entries()) {
        expect(client.ended, `subscriber ${index} ended`).toBe(false);
        expect(positionsOf(client), `subscriber ${index}`).toEqual(positions);
      }
      // Every subscriber reads from the one shared feed at the end.
      expect(t.app.deps.streams.stats()).toMatchObject({ hubs: 1, members: 300 });
    } finally {
      await Promise.all(clients.map((client) => client.close()));
    }
    await waitFor(() => t.app.deps.streams.stats().hubs === 0, 10_000, 'the hub to close with its last subscriber');
  }, 120_000);

  it('drops a subscriber too slow for the shared feed, which then catches up by cursor exactly once', async () => {
    const broadcast = createLogBroadcast({ sql: t.app.deps.sql, notifier: t.app.deps.notifier }, { queueBytes: 4096 });
    const start = await head();
    const abort = new AbortController();
    const follow = () => broadcast.follow({ tenant: org, after: decodeCursor(start), heartbeatMs: 60_000, abort: abort.signal });
    const positionsIn = (data: Uint8Array) => [...Buffer.from(data).toString('utf8').matchAll(/^id: ([0-9a-f]{32})$/gm)].map((match) => match[1]!);
    const fast: string[] = [];
    const fastStream = follow();
    const fastReading = (async () => {
      for await (const chunk of fastStream) if (chunk.kind === 'events') fast.push(...positionsIn(chunk.data));
    })();
    const slowStream = follow();
    try {
      // The slow subscriber joins the feed, takes one chunk and then stops
      // reading: it stays a member while its queue fills.
      const taking = slowStream.next();
      await waitFor(() => broadcast.stats().members === 2, 10_000, 'both subscribers to join');
      const first = await post(0);
      const taken = await taking;
      const slow = positionsIn(taken.value && taken.value.kind === 'events' ? taken.value.data : new Uint8Array());
      expect(slow).toEqual([first]);
      const rest: string[] = [];
      // Each signal its own batch (the fast subscriber has it before the
      // next is sent), so the slow one's queue fills however slow the reads.
      for (let index = 1; index <= 60; index++) {
        const position = await post(index, 'x'.repeat(300));
        rest.push(position);
        await waitFor(() => fast.includes(position), 30_000, 'the fast subscriber');
      }
      const all = [first, ...rest.sort()];
      await waitFor(() => fast.length >= all.length, 30_000, 'the fast subscriber');
      expect(broadcast.stats().dropped).toBe(1);
      while (slow.length < all.length) {
        const { value, done } = await slowStream.next();
        if (done) break;
        if (value.kind === 'events') slow.push(...positionsIn(value.data));
      }
      expect(fast).toEqual(all);
      expect(slow).toEqual(all);
      // Caught up, it joins the shared feed again as it waits for more.
      const waiting = slowStream.next();
      await waitFor(() => broadcast.stats().members === 2, 10_000, 'the slow subscriber to rejoin');
      abort.abort();
      expect((await waiting).done).toBe(true);
    } finally {
      abort.abort();
      await slowStream.return(undefined);
      await fastReading;
    }
    expect(broadcast.stats()).toEqual({ hubs: 0, members: 0, dropped: 1 });
  });

  it('resumes with Last-Event-ID while emits continue, with nothing skipped or repeated', async () => {
    const start = await head();
    const seen: string[] = [];
    let emitted: string[] = [];
    const emitting = burst(150, 2).then((positions) => (emitted = positions));
    let lastEventId = start;
    // Drop the connection three times mid-burst, each after a few more events.
    for (let round = 0; round < 3; round++) {
      const client = await open('', { 'last-event-id': lastEventId });
      try {
        // Or, once the burst is over, everything it emitted: on a slow machine an
        // earlier connection may have taken all but a few of its events.
        const caughtUp = () => emitted.length > 0 && (positionsOf(client).at(-1) ?? lastEventId) === emitted.at(-1);
        await waitFor(() => positionsOf(client).length >= 10 || client.ended || caughtUp(), 30_000, 'some events');
      } finally {
        await client.close();
      }
      seen.push(...positionsOf(client));
      lastEventId = seen[seen.length - 1]!;
    }
    await emitting;
    const client = await open('', { 'last-event-id': lastEventId });
    try {
      const flush = await post(150);
      await waitFor(() => positionsOf(client).includes(flush), 30_000, 'the flush signal');
      seen.push(...positionsOf(client));
      expect(seen).toEqual([...emitted, flush]);
    } finally {
      await client.close();
    }
  });
});

describe('stream caps', () => {
  it('answers 429 rate_limited with Retry-After past the per-key and per-org caps, and frees a slot on disconnect', async () => {
    const app = await createApp(
      parseConfig({ LOG_LEVEL: 'silent', SIGNALBUS_SSE_MAX_STREAMS_PER_KEY: '2', SIGNALBUS_SSE_MAX_STREAMS_PER_ORG: '3' }),
      { databaseUrl: t.database.url, logger: createLogger('silent') },
    );
    const capped = await listen(app);
    const other = await t.createKey(org, 'viewer', 'other@broadcast.test');
    const clients: SseClient[] = [];
    const openWith = async (key: string) => {
      const client = await openSse(`${capped.url}/v1/orgs/${org.slug}/stream`, { authorization: `Bearer ${key}` });
      clients.push(client);
      return client;
    };
    const refused = async (key: string) => {
      const response = await fetch(`${capped.url}/v1/orgs/${org.slug}/stream`, { headers: { authorization: `Bearer ${key}` } });
      const body = (await response.json()) as { code: string };
      return { status: response.status, code: body.code, retryAfter: response.headers.get('retry-after') };
    };
    try {
      expect((await openWith(viewer)).status).toBe(200);
      expect((await openWith(viewer)).status).toBe(200);
      expect(await refused(viewer)).toEqual({ status: 429, code: 'rate_limited', retryAfter: '1' });
      // Another key of the org has its own two, but the org only three.
      expect((await openWith(other)).status).toBe(200);
      expect(await refused(other)).toMatchObject({ status: 429, code: 'rate_limited' });
      await clients[0]!.close();
      const reopened = await waitFor(async () => {
        const client = await openWith(other);
        if (client.status === 200) return client;
        await client.close();
        return undefined;
      }, 10_000, 'a slot freed by the closed stream');
      expect(reopened.status).toBe(200);
    } finally {
      await Promise.all(clients.map((client) => client.close()));
      await capped.close();
      await app.close();
    }
  });
});
