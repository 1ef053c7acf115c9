/**
 * Request rate limits (API.md, Rate limits): token buckets per API key and
 * per org, shared by every server process through PostgreSQL, and per
 * source address, in process, for requests without a known key; and per
 * installation for deliveries to its inbound hook. Owns
 * `public.rate_limit_buckets`; called by the HTTP edge only (the access
 * check and the hook route),
 * and does nothing else with the database. docs/rate-limits.md says why the
 * buckets are leased rather than counted per request or per process.
 */
export { bucketPolicy, createRateLimiter, type RateLimiter, type RateLimitPolicies, type RateVerdict } from './limiter.ts';
export type { BucketPolicy } from './token-bucket.ts';
