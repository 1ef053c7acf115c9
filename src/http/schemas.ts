/** Response and parameter schemas shared by route modules; they generate /openapi.json. */
import { z } from '@hono/zod-openapi';
import { Actor } from '../signals/actor.ts';

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    code: z.string(),
    detail: z.string().optional(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
    request_id: z.string().optional(),
  })
  .openapi('Problem');

export const OrgParams = z.object({
  org: z.string().openapi({ param: { name: 'org', in: 'path' }, description: 'Organization id or slug' }),
});

export const SignalSchema = z
  .object({
    id: z.string(),
    position: z.string().describe('Opaque, commit-ordered stream cursor'),
    type: z.string(),
    schema_version: z.number().int(),
    subject: z.string().nullable(),
    payload: z.record(z.string(), z.unknown()),
    actor: Actor,
    source: z.string(),
    dedupe_key: z.string(),
    payload_hash: z.string(),
    correlation_id: z.string().nullable(),
    causation_id: z.string().nullable(),
    installation_id: z.string().nullable(),
    trace: z.string().nullable(),
    occurred_at: z.string(),
    recorded_at: z.string(),
  })
  .openapi('Signal');

export const OrgSchema = z
  .object({ id: z.string(), slug: z.string(), name: z.string(), status: z.string(), created_at: z.string() })
  .openapi('Organization');

export const ApiKeySchema = z
  .object({
    id: z.string(),
    org_id: z.string().nullable(),
    name: z.string(),
    role: z.string(),
    actor: Actor,
    created_at: z.string(),
  })
  .openapi('ApiKey');

const problemContent = { 'application/problem+json': { schema: ProblemSchema } };

const seconds = (description: string) => ({ description, schema: { type: 'integer' as const, minimum: 0 } });

/** Every authenticated operation is rate-limited per key and per org (API.md, Rate limits). */
const rateLimited = {
  description: 'Rate limited (`rate_limited`): wait `Retry-After` seconds',
  headers: {
    'Retry-After': seconds('Seconds until a request may succeed'),
    'RateLimit-Limit': seconds('Requests the bucket holds'),
    'RateLimit-Remaining': seconds('Requests left in the bucket'),
    'RateLimit-Reset': seconds('Seconds until the bucket is full again'),
    'RateLimit-Policy': {
      description: 'The buckets charged (IETF draft-ietf-httpapi-ratelimit-headers): `"key";q=<burst>;w=<seconds to refill>, "org";…`',
      schema: { type: 'string' as const },
    },
    RateLimit: {
      description: 'Each bucket\'s state: `"key";r=<remaining>;t=<seconds until full>, "org";…`',
      schema: { type: 'string' as const },
    },
  },
  content: problemContent,
};

/** The error responses an authenticated operation can give, for the OpenAPI document. */
export function errorResponses(...statuses: number[]) {
  const descriptions: Record<number, string> = {
    400: 'Malformed request',
    401: 'Missing or invalid API key',
    403: 'Role too weak',
    404: 'Not found (or not visible to this key)',
    409: 'Conflict',
    413: 'Body too large',
    415: 'Unsupported media type',
    422: 'Validation failed',
    503: 'A dependency is not configured or not reachable',
  };
  return {
    ...Object.fromEntries(
      [401, 403, 404, ...statuses].map((status) => [status, { description: descriptions[status] ?? 'Error', content: problemContent }]),
    ),
    429: rateLimited,
  };
}

export function jsonBody<T extends z.ZodType>(schema: T) {
  return { required: true, content: { 'application/json': { schema } } };
}

/** A body the caller may leave out entirely; the operation then reads `{}`. */
export function optionalJsonBody<T extends z.ZodType>(schema: T) {
  return { required: false, content: { 'application/json': { schema } } };
}

export function jsonResponse<T extends z.ZodType>(schema: T, description: string) {
  return { description, content: { 'application/json': { schema } } };
}
