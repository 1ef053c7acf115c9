/**
 * `stripe.*`: refunds, customer updates, Checkout Sessions and Payment Links
 * through the official SDK, with the org's (or installation's)
 * `stripe_api_key`.
 *
 * Idempotency: every attempt of a directive sends the same `Idempotency-Key`
 * (the directive's), so a repeat after a crash, a timeout or a 5xx is
 * replayed by Stripe instead of acted on twice. Stripe forgets keys after
 * 24 hours; `idempotencyWindowMs` makes the core stop before that and fail
 * the directive as `needs_reconcile` rather than risk a second effect.
 */
import type Stripe from 'stripe';
import type { ExecuteRequest, ExecuteResult, Executor } from '../registry.ts';
import { createStripeClients } from './client.ts';
import { STRIPE_API_KEY, stripeFailure } from './errors.ts';
import {
  isStripeKind,
  stripeParams,
  STRIPE_KINDS,
  type CheckoutSessionCreateParams,
  type CustomerUpdateParams,
  type PaymentLinkCreateParams,
  type RefundCreateParams,
  type StripeParams,
} from './params.ts';

export interface StripeExecutorOptions {
  /** `SIGNALBUS_STRIPE_API_BASE`: `protocol://host:port`; Stripe's own API when absent. */
  apiBase?: string;
  /** Per request; a call still running then is abandoned and retried under the same key. */
  timeoutMs?: number;
}

const HOUR_MS = 3_600_000;
/**
 * Stripe keeps idempotency keys for at least 24 h. An attempt starts no later
 * than 23 h after the first: an hour of margin for the attempt itself and for
 * clock skew between us and Stripe.
 */
export const STRIPE_IDEMPOTENCY_WINDOW_MS = 23 * HOUR_MS;
/**
 * Eight attempts: seven gaps, each at most 10 minutes (the core caps its
 * backoff there, and a Retry-After is clipped to the same), so the whole
 * schedule spans at most ~70 minutes, far inside the window above.
 */
export const STRIPE_MAX_ATTEMPTS = 8;
const DEFAULT_TIMEOUT_MS = 30_000;

const idOf = (value: string | { id: string } | null | undefined) => (value == null ? null : typeof value === 'string' ? value : value.id);

type Summary = Record<string, unknown>;
type Call<P> = (stripe: Stripe, params: P, options: Stripe.RequestOptions) => Promise<Summary>;

// Summaries carry provider ids and statuses: they are stored on
// `directive.succeeded`, so nothing a customer typed and nothing secret.
const refundCreate: Call<RefundCreateParams> = async (stripe, params, options) => {
  const refund = await stripe.refunds.create(params, options);
  return {
    id: refund.id,
    object: refund.object,
    status: refund.status,
    amount: refund.amount,
    currency: refund.currency,
    payment_intent: idOf(refund.payment_intent),
    charge: idOf(refund.charge),
    livemode: (refund as { livemode?: boolean }).livemode ?? null,
  };
};

const customerUpdate: Call<CustomerUpdateParams> = async (stripe, { customer, ...fields }, options) => {
  const updated = await stripe.customers.update(customer, fields, options);
  return { id: updated.id, object: updated.object, updated: Object.keys(fields).sort(), livemode: updated.livemode };
};

const checkoutSessionCreate: Call<CheckoutSessionCreateParams> = async (stripe, params, options) => {
  const session = await stripe.checkout.sessions.create(params, options);
  return {
    id: session.id,
    object: session.object,
    status: session.status,
    url: session.url,
    mode: session.mode,
    payment_status: session.payment_status,
    expires_at: session.expires_at,
    livemode: session.livemode,
  };
};

const paymentLinkCreate: Call<PaymentLinkCreateParams> = async (stripe, params, options) => {
  const link = await stripe.paymentLinks.create(params, options);
  return { id: link.id, object: link.object, active: link.active, url: link.url, livemode: link.livemode };
};

const calls = {
  'stripe.refund.create': refundCreate,
  'stripe.customer.update': customerUpdate,
  'stripe.checkout.session.create': checkoutSessionCreate,
  'stripe.payment_link.create': paymentLinkCreate,
} as const;

export function createStripeExecutor(options: StripeExecutorOptions = {}): Executor<StripeParams> {
  const clients = createStripeClients({ apiBase: options.apiBase, timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS });
  return {
    kinds: STRIPE_KINDS,
    params: stripeParams as Executor<StripeParams>['params'],
    estimateCostUsd: () => 0,
    honorsIdempotencyKey: true,
    idempotencyWindowMs: STRIPE_IDEMPOTENCY_WINDOW_MS,
    maxAttempts: STRIPE_MAX_ATTEMPTS,
    async execute(request: ExecuteRequest<StripeParams>): Promise<ExecuteResult> {
      const { kind } = request;
      if (!isStripeKind(kind)) return { outcome: 'permanent', error: { code: 'unknown_kind', message: `the stripe executor does not serve ${kind}` } };
      // Stored params can predate this code: checked again before anything is sent.
      const parsed = stripeParams[kind].safeParse(request.params);
      if (!parsed.success) {
        return { outcome: 'permanent', error: { code: 'invalid_params', message: `the stored params are no longer valid for ${kind}: ${parsed.error.issues[0]?.message ?? 'invalid'}` } };
      }
      const apiKey = await request.credentials.get(STRIPE_API_KEY);
      if (!apiKey) {
        return { outcome: 'permanent', error: { code: 'missing_credential', message: `no secret named ${STRIPE_API_KEY} for this org or installation` } };
      }
      const stripe = clients.for(apiKey);
      const call = calls[kind] as Call<StripeParams>;
      try {
        return { outcome: 'succeeded', result: await call(stripe, parsed.data, { idempotencyKey: request.idempotencyKey }) };
      } catch (error) {
        return stripeFailure(error, apiKey);
      }
    },
  };
}
