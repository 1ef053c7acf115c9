/**
 * A fake Stripe API on loopback, for the real `stripe` SDK: form-encoded
 * bodies, `Authorization: Bearer sk_…`, JSON answers and errors in Stripe's
 * shape, and Stripe's idempotency semantics — the same `Idempotency-Key`
 * with the same request replays the stored answer (`Idempotent-Replayed:
 * true`), with a different request it is a 400 `idempotency_error`. As at
 * Stripe, only requests that started executing are stored: an auth failure,
 * a rate limit, a 500 or a validation error can be retried under the key.
 *
 * It counts every call and every effect (an object created or updated), and
 * fails on demand. No vitest here: `npm run fakes` serves it for demos.
 *
 * Ids ending in `_missing` (`pi_missing`, `cus_missing`) name objects that do
 * not exist; every other well-formed payment intent, charge or customer does.
 */
import { randomBytes } from 'node:crypto';
import type { HttpBindings } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { createGate, createHangs, serveOnLoopback } from './loopback.ts';

export type StripeFailure =
  /** 500 `api_error`, before anything happens. */
  | 'server_error'
  /** 429 `rate_limit` with `Retry-After`. */
  | 'rate_limit'
  /** 429 `lock_timeout` with `Retry-After`. */
  | 'lock_timeout'
  /** Never answers: until the client gives up or the fake closes. */
  | 'hang'
  /** 401: the API key is refused, whatever it is. */
  | 'invalid_api_key'
  /** 402 `card_error` / `card_declined`, stored under the idempotency key as Stripe does. */
  | 'card_declined'
  /** Handles the request (effect and stored answer) then resets the connection without answering. */
  | 'drop_after_effect';

export interface StripeCall {
  method: string;
  path: string;
  /** The decoded form body (values are strings, as on the wire). */
  params: Record<string, unknown>;
  idempotencyKey: string | null;
  apiKey: string | null;
  status: number;
  replayed: boolean;
  failure: StripeFailure | null;
  at: number;
}

export interface StripeEffect {
  type: 'refund.created' | 'customer.updated' | 'checkout.session.created' | 'payment_link.created';
  id: string;
  idempotencyKey: string | null;
}

export interface StripeFake {
  url: string;
  /** Every request, in arrival order. */
  calls: StripeCall[];
  /** Every effect, in order: a replay adds none. */
  effects: StripeEffect[];
  /** Objects by id, as the fake last stored them. */
  objects: Map<string, Record<string, unknown>>;
  /** Queues a failure for the next request(s), in order after any already queued. */
  failNext(mode: StripeFailure, options?: { times?: number; retryAfterSeconds?: number }): void;
  /** Holds every request arriving from now on until the returned release is called. */
  hold(): () => void;
  /** Requests waiting on a `hold`. */
  readonly held: number;
  /** Replaces the accepted API keys. */
  setApiKeys(keys: string[]): void;
  reset(): void;
  close(): Promise<void>;
}

interface StoredAnswer {
  fingerprint: string;
  status: number;
  body: unknown;
}

interface Answer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  /** Stored under the idempotency key (the request started executing). */
  store?: boolean;
}

type Env = { Bindings: HttpBindings };
type Route = (params: Record<string, any>, path: string[], key: string | null) => Answer;

const newStripeId = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`;
const nowSeconds = () => Math.floor(Date.now() / 1000);
const exists = (id: string) => !id.endsWith('_missing');

const stripeError = (status: number, error: Record<string, unknown>): Answer => ({ status, body: { error } });
const missingParam = (param: string) =>
  stripeError(400, { type: 'invalid_request_error', code: 'parameter_missing', param, message: `Missing required param: ${param}.` });
const noSuch = (param: string, id: string) =>
  stripeError(404, { type: 'invalid_request_error', code: 'resource_missing', param, message: `No such ${param}: '${id}'` });

/** Decodes `a[b][0][c]=v` pairs into nested objects and arrays, as Stripe does. */
export function decodeStripeForm(body: string): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [name, value] of new URLSearchParams(body)) {
    const path = name.match(/[^[\]]+|\[\]/g) ?? [name];
    let node: Record<string, unknown> = root;
    path.forEach((segment, index) => {
      if (index === path.length - 1) {
        node[segment] = value;
        return;
      }
      node[segment] ??= {};
      node = node[segment] as Record<string, unknown>;
    });
  }
  const arrays = (value: unknown): unknown => {
    if (typeof value !== 'object' || value === null) return value;
    const entries = Object.entries(value as Record<string, unknown>).map(([key, child]) => [key, arrays(child)] as const);
    if (entries.length > 0 && entries.every(([key]) => /^\d+$/.test(key))) {
      return entries.sort(([a], [b]) => Number(a) - Number(b)).map(([, child]) => child);
    }
    return Object.fromEntries(entries);
  };
  return arrays(root) as Record<string, unknown>;
}

/** One request's identity for idempotency: method, path and its params in a stable order. */
const fingerprintOf = (method: string, path: string, body: string) =>
  `${method} ${path}?${[...new URLSearchParams(body)].map(([name, value]) => `${name}=${value}`).sort().join('&')}`;

const masked = (key: string) => `${key.slice(0, 8)}${'*'.repeat(Math.max(0, key.length - 12))}${key.slice(-4)}`;

export async function startStripeFake(options: { port?: number; apiKeys?: string[] } = {}): Promise<StripeFake> {
  let apiKeys = new Set(options.apiKeys ?? ['sk_test_signalbus_fake']);
  const calls: StripeCall[] = [];
  const effects: StripeEffect[] = [];
  const objects = new Map<string, Record<string, unknown>>();
  const answers = new Map<string, StoredAnswer>();
  const refunded = new Map<string, number>();
  const failures: { mode: StripeFailure; retryAfterSeconds: number }[] = [];
  const hangs = createHangs();
  const gate = createGate();

  const store = (object: Record<string, unknown>) => {
    objects.set(object.id as string, object);
    return object;
  };

  const routes: Record<string, Route> = {
    'POST refunds': (params, _path, key) => {
      const target = (params.payment_intent as string | undefined) ?? (params.charge as string | undefined);
      if (!target) return missingParam('payment_intent');
      if (!exists(target)) return noSuch(params.payment_intent ? 'payment_intent' : 'charge', target);
      const available = 10_000 - (refunded.get(target) ?? 0);
      const amount = params.amount === undefined ? available : Number(params.amount);
      if (!Number.isInteger(amount) || amount <= 0 || amount > available) {
        return stripeError(400, {
          type: 'invalid_request_error',
          code: available === 0 ? 'charge_already_refunded' : 'amount_too_large',
          param: 'amount',
          message: `Refund amount (${amount}) is greater than the unrefunded amount (${available}).`,
        });
      }
      refunded.set(target, 10_000 - available + amount);
      const refund = store({
        id: newStripeId('re'),
        object: 'refund',
        amount,
        currency: 'usd',
        payment_intent: params.payment_intent ?? null,
        charge: params.charge ?? newStripeId('ch'),
        reason: params.reason ?? null,
        metadata: params.metadata ?? {},
        status: 'succeeded',
        created: nowSeconds(),
        livemode: false,
      });
      effects.push({ type: 'refund.created', id: refund.id as string, idempotencyKey: key });
      return { status: 200, body: refund, store: true };
    },
    'POST customers/:id': (params, [, id], key) => {
      if (!exists(id!)) return noSuch('customer', id!);
      const before = objects.get(id!) ?? { id, object: 'customer', email: null, name: null, phone: null, description: null, metadata: {}, livemode: false, created: nowSeconds() };
      const customer = store({
        ...before,
        ...params,
        metadata: { ...(before.metadata as object), ...(params.metadata ?? {}) },
        id,
        object: 'customer',
      });
      effects.push({ type: 'customer.updated', id: id!, idempotencyKey: key });
      return { status: 200, body: customer, store: true };
    },
    'POST checkout/sessions': (params, _path, key) => {
      if (!params.mode) return missingParam('mode');
      if (!params.success_url && params.ui_mode !== 'embedded') return missingParam('success_url');
      if (params.mode !== 'setup' && !Array.isArray(params.line_items)) return missingParam('line_items');
      if (params.customer && !exists(params.customer)) return noSuch('customer', params.customer);
      const id = newStripeId('cs_test');
      const lineItems = (params.line_items ?? []) as { quantity?: string; price_data?: { unit_amount?: string } }[];
      const session = store({
        id,
        object: 'checkout.session',
        mode: params.mode,
        status: 'open',
        payment_status: params.mode === 'setup' ? 'no_payment_required' : 'unpaid',
        url: `https://checkout.stripe.com/c/pay/${id}`,
        success_url: params.success_url,
        cancel_url: params.cancel_url ?? null,
        customer: params.customer ?? null,
        customer_email: params.customer_email ?? null,
        client_reference_id: params.client_reference_id ?? null,
        metadata: params.metadata ?? {},
        amount_total: lineItems.reduce((sum, item) => sum + Number(item.price_data?.unit_amount ?? 1000) * Number(item.quantity ?? 1), 0),
        expires_at: nowSeconds() + 24 * 3600,
        livemode: false,
      });
      effects.push({ type: 'checkout.session.created', id, idempotencyKey: key });
      return { status: 200, body: session, store: true };
    },
    'POST payment_links': (params, _path, key) => {
      if (!Array.isArray(params.line_items)) return missingParam('line_items');
      const id = newStripeId('plink');
      const link = store({
        id,
        object: 'payment_link',
        active: true,
        url: `https://buy.stripe.com/test_${randomBytes(8).toString('hex')}`,
        metadata: params.metadata ?? {},
        livemode: false,
      });
      effects.push({ type: 'payment_link.created', id, idempotencyKey: key });
      return { status: 200, body: link, store: true };
    },
  };
  const retrieve = (type: string): Route => (_params, [, id]) => {
    const object = objects.get(id!);
    return object ? { status: 200, body: object } : noSuch(type, id!);
  };
  routes['GET refunds/:id'] = retrieve('refund');
  routes['GET customers/:id'] = retrieve('customer');
  routes['GET checkout/sessions/:id'] = retrieve('checkout.session');
  routes['GET payment_links/:id'] = retrieve('payment_link');

  const routeOf = (method: string, path: string): [Route, string[]] | undefined => {
    const segments = path.split('/').filter(Boolean);
    for (const [pattern, route] of Object.entries(routes)) {
      const [routeMethod, routePath] = pattern.split(' ') as [string, string];
      const parts = routePath.split('/');
      if (routeMethod !== method || parts.length !== segments.length) continue;
      if (parts.every((part, index) => part.startsWith(':') || part === segments[index])) return [route, segments];
    }
    return undefined;
  };

  /** Holds a request open until the client leaves or the fake closes. */
  const hang = (c: Context<Env>) => hangs.hang(c.env.outgoing);

  const app = new Hono<Env>();
  app.all('/v1/*', async (c) => {
    await gate.pass();
    const method = c.req.method;
    const path = c.req.path.slice('/v1/'.length);
    const body = method === 'POST' ? await c.req.text() : '';
    const params = method === 'POST' ? decodeStripeForm(body) : Object.fromEntries(new URL(c.req.url).searchParams);
    const apiKey = /^Bearer (.+)$/.exec(c.req.header('authorization') ?? '')?.[1] ?? null;
    const idempotencyKey = c.req.header('idempotency-key') ?? null;
    const failure = failures.shift() ?? null;
    const call: StripeCall = { method, path, params, idempotencyKey, apiKey, status: 0, replayed: false, failure: failure?.mode ?? null, at: Date.now() };
    calls.push(call);

    const answer = (result: Answer, extra: Record<string, string> = {}) => {
      call.status = result.status;
      const headers: Record<string, string> = { 'request-id': newStripeId('req'), ...extra, ...result.headers };
      if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
      return c.json(result.body as object, result.status as 200, headers);
    };

    if (failure?.mode === 'hang') {
      call.status = -1;
      await hang(c);
      return c.body(null, 500);
    }
    if (!apiKey || !apiKeys.has(apiKey) || failure?.mode === 'invalid_api_key') {
      return answer(stripeError(401, {
        type: 'invalid_request_error',
        message: apiKey ? `Invalid API Key provided: ${masked(apiKey)}` : 'You did not provide an API key.',
      }));
    }
    if (failure?.mode === 'server_error') {
      return answer(stripeError(500, { type: 'api_error', message: 'Something went wrong on Stripe\'s end.' }));
    }
    if (failure?.mode === 'rate_limit' || failure?.mode === 'lock_timeout') {
      const rateLimit = failure.mode === 'rate_limit';
      return answer({
        ...stripeError(429, {
          type: 'invalid_request_error',
          code: failure.mode,
          message: rateLimit ? 'Request rate limit exceeded.' : 'This object cannot be accessed right now because another API request or Stripe process is currently accessing it.',
        }),
        headers: { 'retry-after': String(failure.retryAfterSeconds) },
      });
    }

    const fingerprint = fingerprintOf(method, path, body);
    const storageKey = idempotencyKey && method === 'POST' ? `${apiKey}\u0000${idempotencyKey}` : null;
    const stored = storageKey ? answers.get(storageKey) : undefined;
    let result: Answer;
    if (stored && stored.fingerprint !== fingerprint) {
      result = stripeError(400, {
        type: 'idempotency_error',
        message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`,
      });
    } else if (stored) {
      call.replayed = true;
      result = { status: stored.status, body: stored.body, headers: { 'idempotent-replayed': 'true' } };
    } else if (failure?.mode === 'card_declined') {
      result = {
        ...stripeError(402, { type: 'card_error', code: 'card_declined', decline_code: 'generic_decline', message: 'Your card was declined.' }),
        store: true,
      };
    } else {
      const found = routeOf(method, path);
      result = found
        ? found[0](params, found[1], idempotencyKey)
        : stripeError(404, { type: 'invalid_request_error', message: `Unrecognized request URL (${method}: /v1/${path}).` });
    }
    if (storageKey && result.store && !stored) answers.set(storageKey, { fingerprint, status: result.status, body: result.body });

    if (failure?.mode === 'drop_after_effect') {
      call.status = -1;
      // Done, remembered, and never told: the client sees a reset connection.
      c.env.incoming.socket.destroy();
      await hang(c);
      return c.body(null, 500);
    }
    return answer(result);
  });
  app.notFound((c) => c.json({ error: { type: 'invalid_request_error', message: `Unrecognized request URL (${c.req.method}: ${c.req.path}).` } }, 404));

  const loopback = await serveOnLoopback(app, { port: options.port ?? 0 });

  const fake: StripeFake = {
    url: loopback.url,
    calls,
    effects,
    objects,
    failNext(mode, { times = 1, retryAfterSeconds = 1 } = {}) {
      for (let n = 0; n < times; n++) failures.push({ mode, retryAfterSeconds });
    },
    hold() {
      return gate.hold();
    },
    get held() {
      return gate.held;
    },
    setApiKeys(keys) {
      apiKeys = new Set(keys);
    },
    reset() {
      calls.length = 0;
      effects.length = 0;
      failures.length = 0;
      objects.clear();
      answers.clear();
      refunded.clear();
      gate.release();
    },
    async close() {
      gate.release();
      hangs.releaseAll();
      await loopback.close();
    },
  };
  return fake;
}
