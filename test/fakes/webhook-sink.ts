/**
 * A webhook receiver on loopback that behaves as a Standard Webhooks
 * consumer should: it verifies each signature with the `standardwebhooks`
 * library (a bad one is answered 401 and counted as rejected), and dedupes by
 * `webhook-id`, so `effects` counts unique ids and a redelivery only adds to
 * `duplicates`. It counts TCP connections as well as requests, so a test can
 * prove a refused target was never even connected to. No vitest here: it
 * also runs as a standalone demo receiver.
 */
import { Hono } from 'hono';
import { Webhook } from 'standardwebhooks';
import { createHangs, serveOnLoopback } from './loopback.ts';

/**
 * How to answer: `ok` (204), `500`, `429` (with `Retry-After` seconds),
 * `400`, `redirect` (302 to {@link REDIRECT_TARGET}), `hang` (never answers).
 */
export type SinkMode = 'ok' | '500' | '429' | '400' | 'redirect' | 'hang';

export interface SinkBehaviour {
  mode: SinkMode;
  /** For `429`: the `Retry-After` value in seconds (default 1). */
  retryAfterSeconds?: number;
}

/** Where `redirect` points: a path of this same sink, so a followed redirect would show up in `requestsAt`. */
export const REDIRECT_TARGET = '/redirected';

export interface Delivery {
  webhookId: string;
  path: string;
  headers: Record<string, string>;
  body: unknown;
  /** The status the sink answered (0 for a hang). */
  status: number;
  receivedAt: Date;
}

export interface SinkCalls {
  /** TCP connections accepted, whether or not a request followed. */
  connections: number;
  /** HTTP requests, any path, any outcome. */
  requests: number;
  /** Requests whose signature did not verify (answered 401). */
  rejected: number;
  /** Unique webhook-ids accepted with a 2xx. */
  effects: number;
  /** Accepted redeliveries of an id already in effect. */
  duplicates: number;
}

export interface WebhookSink {
  url: string;
  port: number;
  calls: SinkCalls;
  /** Verified deliveries, in arrival order, including those answered with a failure. */
  deliveries: Delivery[];
  requestsAt(path: string): number;
  /** Answers the next request(s) with `mode`, then goes back to normal. */
  failNext(mode: Exclude<SinkMode, 'ok'>, options?: { retryAfterSeconds?: number; times?: number }): void;
  /** Answers every request to `path` with `mode` until reset. */
  behaveAt(path: string, behaviour: SinkBehaviour): void;
  reset(): void;
  close(): Promise<void>;
}

export async function startWebhookSink({ port = 0, secret }: { port?: number; secret: string }): Promise<WebhookSink> {
  const verifier = new Webhook(secret);
  const calls: SinkCalls = { connections: 0, requests: 0, rejected: 0, effects: 0, duplicates: 0 };
  const deliveries: Delivery[] = [];
  const byPath = new Map<string, number>();
  const seen = new Set<string>();
  let queued: SinkBehaviour[] = [];
  const perPath = new Map<string, SinkBehaviour>();
  // Hung requests are released (and their sockets destroyed) on reset and close.
  const hangs = createHangs();
  let url = '';

  const app = new Hono();
  app.all('*', async (c) => {
    const path = new URL(c.req.url).pathname;
    calls.requests++;
    byPath.set(path, (byPath.get(path) ?? 0) + 1);
    const raw = await c.req.text();
    const headers = Object.fromEntries(c.req.raw.headers.entries());
    let body: unknown;
    try {
      body = verifier.verify(raw, headers);
    } catch {
      calls.rejected++;
      return c.json({ error: 'invalid signature' }, 401);
    }
    const behaviour = perPath.get(path) ?? queued.shift() ?? { mode: 'ok' };
    const delivery: Delivery = { webhookId: headers['webhook-id']!, path, headers, body, status: 0, receivedAt: new Date() };
    deliveries.push(delivery);
    switch (behaviour.mode) {
      case 'hang':
        await hangs.hang();
        return c.body(null, 503);
      case 'redirect':
        delivery.status = 302;
        return c.redirect(`${url}${REDIRECT_TARGET}`, 302);
      case '429':
        delivery.status = 429;
        c.header('retry-after', String(behaviour.retryAfterSeconds ?? 1));
        return c.json({ error: 'slow down' }, 429);
      case '500':
        delivery.status = 500;
        return c.json({ error: 'receiver failed' }, 500);
      case '400':
        delivery.status = 400;
        return c.json({ error: 'bad payload' }, 400);
      case 'ok':
        delivery.status = 204;
        if (seen.has(delivery.webhookId)) calls.duplicates++;
        else {
          seen.add(delivery.webhookId);
          calls.effects++;
        }
        return c.body(null, 204);
    }
  });

  const loopback = await serveOnLoopback(app, { port, onConnection: () => calls.connections++ });
  url = loopback.url;

  return {
    url,
    port: loopback.port,
    calls,
    deliveries,
    requestsAt: (path) => byPath.get(path) ?? 0,
    failNext(mode, { retryAfterSeconds, times = 1 } = {}) {
      for (let n = 0; n < times; n++) queued.push({ mode, ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}) });
    },
    behaveAt(path, behaviour) {
      perPath.set(path, behaviour);
    },
    reset() {
      hangs.releaseAll();
      Object.assign(calls, { connections: 0, requests: 0, rejected: 0, effects: 0, duplicates: 0 });
      deliveries.length = 0;
      byPath.clear();
      seen.clear();
      queued = [];
      perPath.clear();
    },
    async close() {
      hangs.releaseAll();
      await loopback.close();
    },
  };
}
