/**
 * The params of each `stripe.*` directive kind: a deliberate subset of the
 * Stripe API's own parameters, checked at proposal so a policy sees exactly
 * what will be sent and a malformed directive is a 422, never a 400 from
 * Stripe hours later. Objects are strict: an unknown field is refused rather
 * than silently dropped, because what was approved must be what is sent.
 */
import { z } from 'zod';

/** Stripe's limits: 50 keys, keys up to 40 characters without brackets, values up to 500. */
export const StripeMetadata = z
  .record(z.string().min(1).max(40).regex(/^[^[\]]+$/, 'metadata keys must not contain square brackets'), z.string().max(500))
  .refine((metadata) => Object.keys(metadata).length <= 50, 'metadata holds at most 50 keys');

const Currency = z.string().regex(/^[a-z]{3}$/, 'a three-letter ISO currency code in lowercase, e.g. usd');
const HttpsOrHttpUrl = z.url({ protocol: /^https?$/ }).max(5000);
const Quantity = z.number().int().min(1).max(999_999);
const id = (prefix: string) => z.string().min(prefix.length + 1).max(255).startsWith(prefix, `must be a Stripe id starting with ${prefix}`);

export const RefundCreateParams = z
  .strictObject({
    payment_intent: id('pi_').optional(),
    charge: id('ch_').optional(),
    /** In the smallest currency unit; the whole remaining amount when absent. */
    amount: z.number().int().positive().optional(),
    reason: z.enum(['duplicate', 'fraudulent', 'requested_by_customer']).optional(),
    metadata: StripeMetadata.optional(),
  })
  .refine((params) => (params.payment_intent === undefined) !== (params.charge === undefined), {
    message: 'exactly one of payment_intent or charge is required',
    path: ['payment_intent'],
  });
export type RefundCreateParams = z.infer<typeof RefundCreateParams>;

const Address = z.strictObject({
  line1: z.string().max(200).optional(),
  line2: z.string().max(200).optional(),
  city: z.string().max(200).optional(),
  state: z.string().max(200).optional(),
  postal_code: z.string().max(40).optional(),
  country: z.string().regex(/^[A-Z]{2}$/, 'a two-letter ISO country code, e.g. US').optional(),
});

export const CustomerUpdateParams = z
  .strictObject({
    customer: id('cus_'),
    email: z.email().max(512).optional(),
    name: z.string().min(1).max(256).optional(),
    phone: z.string().min(1).max(20).optional(),
    description: z.string().max(350).optional(),
    address: Address.optional(),
    preferred_locales: z.array(z.string().min(2).max(20)).max(10).optional(),
    metadata: StripeMetadata.optional(),
  })
  .refine((params) => Object.keys(params).some((key) => key !== 'customer'), {
    message: 'name at least one field to update besides customer',
    path: ['customer'],
  });
export type CustomerUpdateParams = z.infer<typeof CustomerUpdateParams>;

/** A line item naming a Price, or describing an ad hoc one. */
const CheckoutLineItem = z.union([
  z.strictObject({ price: id('price_'), quantity: Quantity }),
  z.strictObject({
    price_data: z.strictObject({
      currency: Currency,
      unit_amount: z.number().int().min(0),
      product_data: z.strictObject({ name: z.string().min(1).max(250), description: z.string().max(500).optional() }),
      recurring: z.strictObject({ interval: z.enum(['day', 'week', 'month', 'year']), interval_count: z.number().int().min(1).optional() }).optional(),
    }),
    quantity: Quantity,
  }),
]);

export const CheckoutSessionCreateParams = z
  .strictObject({
    mode: z.enum(['payment', 'subscription', 'setup']),
    line_items: z.array(CheckoutLineItem).min(1).max(100).optional(),
    /** Setup mode only: the currency of the payment methods to set up. */
    currency: Currency.optional(),
    success_url: HttpsOrHttpUrl,
    cancel_url: HttpsOrHttpUrl.optional(),
    customer: id('cus_').optional(),
    customer_email: z.email().max(512).optional(),
    client_reference_id: z.string().min(1).max(200).optional(),
    allow_promotion_codes: z.boolean().optional(),
    metadata: StripeMetadata.optional(),
  })
  .refine((params) => (params.mode === 'setup') === (params.line_items === undefined), {
    message: 'line_items are required in payment and subscription mode, and not allowed in setup mode',
    path: ['line_items'],
  })
  .refine((params) => params.customer === undefined || params.customer_email === undefined, {
    message: 'name a customer or a customer_email, not both',
    path: ['customer_email'],
  });
export type CheckoutSessionCreateParams = z.infer<typeof CheckoutSessionCreateParams>;

export const PaymentLinkCreateParams = z.strictObject({
  line_items: z
    .array(
      z.strictObject({
        price: id('price_'),
        quantity: Quantity,
        adjustable_quantity: z.strictObject({ enabled: z.boolean(), minimum: z.number().int().min(0).optional(), maximum: z.number().int().min(1).optional() }).optional(),
      }),
    )
    .min(1)
    .max(20),
  after_completion: z
    .discriminatedUnion('type', [
      z.strictObject({ type: z.literal('redirect'), redirect: z.strictObject({ url: HttpsOrHttpUrl }) }),
      z.strictObject({ type: z.literal('hosted_confirmation'), hosted_confirmation: z.strictObject({ custom_message: z.string().max(500).optional() }).optional() }),
    ])
    .optional(),
  allow_promotion_codes: z.boolean().optional(),
  metadata: StripeMetadata.optional(),
});
export type PaymentLinkCreateParams = z.infer<typeof PaymentLinkCreateParams>;

export const STRIPE_KINDS = ['stripe.refund.create', 'stripe.customer.update', 'stripe.checkout.session.create', 'stripe.payment_link.create'] as const;
export type StripeKind = (typeof STRIPE_KINDS)[number];

export interface StripeParamsByKind {
  'stripe.refund.create': RefundCreateParams;
  'stripe.customer.update': CustomerUpdateParams;
  'stripe.checkout.session.create': CheckoutSessionCreateParams;
  'stripe.payment_link.create': PaymentLinkCreateParams;
}
export type StripeParams = StripeParamsByKind[StripeKind];

export const stripeParams: { readonly [K in StripeKind]: z.ZodType<StripeParamsByKind[K]> } = {
  'stripe.refund.create': RefundCreateParams,
  'stripe.customer.update': CustomerUpdateParams,
  'stripe.checkout.session.create': CheckoutSessionCreateParams,
  'stripe.payment_link.create': PaymentLinkCreateParams,
};

export const isStripeKind = (kind: string): kind is StripeKind => (STRIPE_KINDS as readonly string[]).includes(kind);
