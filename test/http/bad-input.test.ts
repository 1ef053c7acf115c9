/**
 * Bad input on every write route, generated with fast-check: arbitrary JSON,
 * malformed JSON, valid bodies with one field spoiled, oversized bodies and
 * wrong content types. The law: never a 5xx; always an RFC 9457 problem with a
 * documented `code` whose status it carries; no stack, SQL or secret in the
 * body; and nothing written — organizations, schemas, keys and signals are
 * counted around every single request.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PLATFORM_ACTOR } from '../../src/auth/actor.ts';
import { CreateApiKeyInput, createApiKey } from '../../src/auth/api-keys.ts';
import { canonicalJson } from '../../src/core/canonical-json.ts';
import { ERROR_STATUS, type ErrorCode } from '../../src/core/errors.ts';
import { newId } from '../../src/core/ids.ts';
import { EmitSignalInput, isReservedType } from '../../src/signals/model.ts';
import { CreateOrgInput } from '../../src/tenancy/provision.ts';
import type { Tenant } from '../../src/tenancy/tenant.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

const CODES = Object.keys(ERROR_STATUS) as ErrorCode[];
const RUNS = 200;

let t: TestApp;
let org: Tenant;
let adminKey: string;
let revokedKeyId: string;
let otherOrgKeyId: string;
let platformKeyId: string;

interface Answer {
  status: number;
  contentType: string;
  text: string;
  body: any;
}

/** One request with exactly the headers given (no content type is added). */
async function send(
  method: string,
  path: string,
  { key, text, headers = {} }: { key: string; text?: string; headers?: Record<string, string> },
): Promise<Answer> {
  const response = await t.app.http.request(path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...headers },
    ...(text !== undefined ? { body: text } : {}),
  });
  const body = await response.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    parsed = undefined;
  }
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', text: body, body: parsed };
}

const sendJson = (method: string, path: string, key: string, value: unknown, headers: Record<string, string> = {}) =>
  send(method, path, { key, text: JSON.stringify(value), headers: { 'content-type': 'application/json', ...headers } });

async function counts() {
  const [row] = await t.app.deps.sql`
    select (select count(*)::int from public.organizations) as orgs,
           (select count(*)::int from pg_namespace where nspname like 'org\\_%') as schemas,
           (select count(*)::int from public.tenant_migrations) as tenant_migrations,
           (select count(*)::int from public.api_keys) as keys,
           (select count(*)::int from public.api_keys where revoked_at is not null) as revoked,
           (select count(*)::int from ${t.app.deps.sql(`${org.schema}.signals`)}) as signals`;
  return row!;
}

const STACK_FRAME = /(\n|\\n)\s*at\s|\(\S+:\d+:\d+\)|node:internal|node_modules|\.ts:\d+/;

/** The problem contract, and nothing that should never leave the server. */
function expectCleanProblem(answer: Answer, allowed: readonly ErrorCode[], what: string) {
  const context = `${what} → ${answer.status} ${answer.text.slice(0, 300)}`;
  expect(answer.status, context).toBeLessThan(500);
  expect(answer.contentType, context).toContain('application/problem+json');
  expect(CODES, context).toContain(answer.body?.code);
  expect(allowed, context).toContain(answer.body.code);
  expect(answer.status, context).toBe(ERROR_STATUS[answer.body.code as ErrorCode]);
  expect(answer.body.status, context).toBe(answer.status);
  expect(typeof answer.body.type, context).toBe('string');
  expect(typeof answer.body.title, context).toBe('string');
  expectNothingSensitive(answer.text, context);
}

function expectNothingSensitive(text: string, context: string) {
  expect(STACK_FRAME.test(text), `${context}: stack frame`).toBe(false);
  const lower = text.toLowerCase();
  for (const word of ['select', 'insert', 'postgres', 'sbk_', 'secret_hash', 'syntaxerror', 'typeerror']) {
    expect(lower.includes(word), `${context}: contains ${word}`).toBe(false);
  }
}

/** Runs `property` over `arbitrary` and checks around each run that nothing was written. */
async function assertNothingWritten<T>(arbitrary: fc.Arbitrary<T>, property: (value: T) => Promise<void>) {
  await fc.assert(
    fc.asyncProperty(arbitrary, async (value) => {
      // Counted per run, so a write is pinned on the input that made it (and shrinking stays honest).
      const before = await counts();
      await property(value);
      expect(await counts(), `wrote something for ${JSON.stringify(value)?.slice(0, 500)}`).toEqual(before);
    }),
    { numRuns: RUNS },
  );
}

// ---------------------------------------------------------------------------
// Generators shared by the routes.

/** Values of the wrong type, shape or size for almost any field. */
const spoiled: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }),
  fc.string({ maxLength: 12 }),
  fc.string({ minLength: 257, maxLength: 600 }),
  fc.constantFrom('', ' ', '   ', 'x'.repeat(20_000), '😀'.repeat(150), 'DROP TABLE x;--', '../../etc/passwd', '0000-01-01T00:00:00Z'),
  // Characters PostgreSQL refuses to store: NUL anywhere, unpaired surrogates in jsonb.
  fc.constantFrom('\u0000', 'a\u0000b', '\ud800', 'x\udc00y', '😀\ud83d'),
  fc.dictionary(fc.constantFrom('k', 'k\u0000', '\ud800'), fc.constantFrom('v', 'v\u0000', '\udfff'), { minKeys: 1, maxKeys: 2 }),
);

/** What the server receives: NaN and Infinity become null, undefined members vanish. */
const asSent = (value: unknown): unknown => (value === undefined ? undefined : JSON.parse(JSON.stringify(value)));

/** Nested arrays deeper than any payload may nest (canonical JSON and jsonb recurse). */
const deeplyNested = (depth: number) => JSON.parse('['.repeat(depth) + ']'.repeat(depth)) as unknown;

/** True when some string in `value`, keys included, holds NUL: no PostgreSQL text or jsonb can store it. */
function hasNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\u0000');
  if (value && typeof value === 'object') return Object.entries(value).some(([key, item]) => key.includes('\u0000') || hasNul(item));
  return false;
}

/** Strings that are not JSON: fragments, truncations and plain garbage. */
function malformed(validText: string): fc.Arbitrary<string> {
  const notJson = (text: string) => {
    try {
      JSON.parse(text);
      return false;
    } catch {
      return true;
    }
  };
  return fc
    .oneof(
      fc.constantFrom('', '{', '}', '{"a":', "{'a': 1}", '[1, 2', 'undefined', 'NaN', '{"a":1}}', '{"a":01}', '\u0000', 'nul'),
      fc.nat({ max: Math.max(0, validText.length - 1) }).map((end) => validText.slice(0, end)),
      fc.tuple(fc.nat({ max: validText.length }), fc.constantFrom('}', '{', ',', '"', ':', '\\', '\u0000')).map(
        ([at, junk]) => validText.slice(0, at) + junk + validText.slice(at),
      ),
      fc.string({ maxLength: 40 }),
    )
    .filter(notJson);
}

const WRONG_CONTENT_TYPES = [
  'text/plain',
  'text/json',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=xyz',
  'application/xml',
  'application/octet-stream',
  'application/jsonp',
  '',
  undefined,
] as const;

type Mutation =
  | { kind: 'json'; value: unknown }
  | { kind: 'raw'; text: string }
  | { kind: 'content-type'; contentType: string | undefined };

/**
 * Bodies for a route whose valid body is `valid`: arbitrary JSON, one field
 * replaced or removed (top level or nested), malformed text, or a valid body
 * under the wrong content type. `wouldWrite` filters out the rare generated
 * body that is in fact valid.
 */
function badBodies(
  valid: Record<string, unknown>,
  wouldWrite: (value: unknown) => boolean,
  extraFields: string[] = [],
): fc.Arbitrary<Mutation> {
  const fields = [...Object.keys(valid), ...extraFields];
  const nested = Object.entries(valid).flatMap(([key, value]) =>
    value && typeof value === 'object' && !Array.isArray(value) ? Object.keys(value).map((inner) => [key, inner] as const) : [],
  );
  const replaceField = fc.tuple(fc.constantFrom(...fields), spoiled).map(([field, value]) => ({ ...valid, [field]: value }));
  const dropField = fc.constantFrom(...Object.keys(valid)).map((field) => {
    const copy: Record<string, unknown> = { ...valid };
    delete copy[field];
    return copy;
  });
  const replaceNested = nested.length
    ? fc
        .tuple(fc.constantFrom(...nested), spoiled)
        .map(([[outer, inner], value]) => ({ ...valid, [outer]: { ...(valid[outer] as object), [inner]: value } }))
    : replaceField;
  const json = fc
    .oneof(fc.jsonValue(), replaceField, replaceField, dropField, replaceNested)
    .map(asSent)
    .filter((value) => !wouldWrite(value))
    .map((value): Mutation => ({ kind: 'json', value }));
  return fc.oneof(
    { arbitrary: json, weight: 6 },
    { arbitrary: malformed(JSON.stringify(valid)).map((text): Mutation => ({ kind: 'raw', text })), weight: 2 },
    { arbitrary: fc.constantFrom(...WRONG_CONTENT_TYPES).map((contentType): Mutation => ({ kind: 'content-type', contentType })), weight: 1 },
  );
}

/** Sends a mutation to a JSON route; returns the answer and the codes the contract allows for it. */
async function sendMutation(
  method: string,
  path: string,
  key: string,
  valid: unknown,
  mutation: Mutation,
  headers: Record<string, string> = {},
): Promise<{ answer: Answer; allowed: readonly ErrorCode[] }> {
  switch (mutation.kind) {
    case 'json':
      return {
        answer: await sendJson(method, path, key, mutation.value, headers),
        allowed: ['validation_failed', 'reserved_type', 'payload_too_large'],
      };
    case 'raw':
      return {
        answer: await send(method, path, { key, text: mutation.text, headers: { 'content-type': 'application/json', ...headers } }),
        allowed: ['invalid_json'],
      };
    case 'content-type':
      return {
        answer: await send(method, path, {
          key,
          text: JSON.stringify(valid),
          headers: { ...(mutation.contentType !== undefined ? { 'content-type': mutation.contentType } : {}), ...headers },
        }),
        allowed: ['unsupported_media_type'],
      };
  }
}

function emitWouldWrite(value: unknown): boolean {
  const parsed = EmitSignalInput.safeParse(value);
  if (!parsed.success || isReservedType(parsed.data.type)) return false;
  return Buffer.byteLength(canonicalJson(parsed.data.payload)) <= t.app.deps.maxPayloadBytes;
}

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('bad');
  const other = await t.createOrg('bad_other');
  const make = async (tenant: Tenant | null, role: 'admin' | 'viewer' | 'support') =>
    (
      await createApiKey(t.app.deps, {
        tenant,
        input: { name: `${role} key`, role, actor: { type: 'human', id: `${role}@bad.test` } },
        by: PLATFORM_ACTOR,
      })
    );
  const admin = await make(org, 'admin');
  adminKey = admin.secret;
  const doomed = await make(org, 'viewer');
  const revoked = await t.request('DELETE', `/v1/orgs/bad/api-keys/${doomed.apiKey.id}`, { key: adminKey });
  expect(revoked.status).toBe(200);
  revokedKeyId = doomed.apiKey.id;
  otherOrgKeyId = (await make(other, 'admin')).apiKey.id;
  platformKeyId = (await make(null, 'support')).apiKey.id;
});
afterAll(() => t.close());

describe('bad input on write routes writes nothing and answers a clean problem', () => {
  it('POST /v1/orgs', async () => {
    const valid = { slug: 'fresh_org', name: 'Fresh Org' };
    const huge = { kind: 'json' as const, value: { ...valid, name: 'n'.repeat(70 * 1024) } };
    await assertNothingWritten(
      fc.oneof({ arbitrary: badBodies(valid, (value) => CreateOrgInput.safeParse(value).success && !hasNul(value)), weight: 20 }, { arbitrary: fc.constant(huge), weight: 1 }),
      async (mutation) => {
        const { answer, allowed } = await sendMutation('POST', '/v1/orgs', t.platformKey, valid, mutation);
        expectCleanProblem(answer, allowed, 'POST /v1/orgs');
      },
    );
  });

  it('POST /v1/orgs/{org}/api-keys', async () => {
    const valid = { name: 'ci', role: 'operator', actor: { type: 'human', id: 'ana@bad.test' } };
    await assertNothingWritten(badBodies(valid, (value) => CreateApiKeyInput.safeParse(value).success && !hasNul(value)), async (mutation) => {
      const { answer, allowed } = await sendMutation('POST', '/v1/orgs/bad/api-keys', adminKey, valid, mutation);
      expectCleanProblem(answer, allowed, 'POST api-keys');
    });
  });

  it('DELETE /v1/orgs/{org}/api-keys/{id}', async () => {
    const ids = fc.oneof(
      fc.string({ minLength: 1, maxLength: 40 }),
      fc.string({ minLength: 65, maxLength: 120 }),
      fc.constant(null).map(() => newId('apiKey')),
      fc.constant(null).map(() => newId('signal')),
      fc.constantFrom('key_', 'KEY_00000000000000000000000000', "key_' or '1'='1", 'key_%00', 'key_\u0000', '\u0000', '%2e%2e', '..', '.'),
      fc.constant(null).map(() => revokedKeyId),
      fc.constant(null).map(() => otherOrgKeyId),
      fc.constant(null).map(() => platformKeyId),
    );
    await assertNothingWritten(ids, async (id) => {
      const path = `/v1/orgs/bad/api-keys/${encodeURIComponent(id)}`;
      const answer = await send('DELETE', path, { key: adminKey });
      expectCleanProblem(answer, ['not_found', 'validation_failed'], `DELETE ${path}`);
    });
  });

  it('POST /v1/orgs/{org}/signals', async () => {
    const valid = {
      type: 'bad.input.tested',
      subject: 'thread:1',
      payload: { post_id: 'p1', body: 'hello' },
      dedupe_key: 'bad-valid-1',
      occurred_at: '2026-11-21T10:00:00Z',
      correlation_id: 'c-1',
      causation_id: 'sig_x',
      schema_version: 1,
    };
    const reserved = fc
      .constantFrom('directive.approved', 'org.created', 'installation.installed', 'policy.changed', 'webhook.received', 'execution.failed', 'replay.started')
      .map((type): Mutation => ({ kind: 'json', value: { ...valid, type } }));
    const tooBig = fc.constant<Mutation>({ kind: 'json', value: { ...valid, payload: { blob: 'x'.repeat(300 * 1024) } } });
    const unstorablePayload = fc
      .oneof(
        fc.integer({ min: 130, max: 2_000 }).map((depth) => ({ nested: deeplyNested(depth) })),
        fc.constantFrom({ a: 'x\u0000' }, { 'k\u0000': 1 }, { list: ['ok', '\ud800'] }, { deep: { deeper: { s: '\udc00' } } }),
      )
      .map((payload): Mutation => ({ kind: 'json', value: { ...valid, payload } }));
    const badHeader = fc
      .oneof(fc.constant(''), fc.string({ minLength: 257, maxLength: 300, unit: fc.constantFrom('a', 'Z', '0', '-', '_') }))
      .map((value) => ({ kind: 'header' as const, value }));
    const unknownOrg = fc
      .string({ minLength: 1, maxLength: 50 })
      .filter((slug) => slug !== 'bad' && slug !== org.id && !['.', '..'].includes(slug))
      .map((slug) => ({ kind: 'org' as const, slug }));
    await assertNothingWritten(
      fc.oneof(
        { arbitrary: badBodies(valid, emitWouldWrite, ['type', 'payload']), weight: 16 },
        { arbitrary: reserved, weight: 1 },
        { arbitrary: tooBig, weight: 1 },
        { arbitrary: unstorablePayload, weight: 2 },
        { arbitrary: badHeader, weight: 1 },
        { arbitrary: unknownOrg, weight: 1 },
      ),
      async (mutation) => {
        if (mutation.kind === 'header') {
          const answer = await sendJson('POST', '/v1/orgs/bad/signals', adminKey, { ...valid, dedupe_key: undefined }, { 'idempotency-key': mutation.value });
          expectCleanProblem(answer, ['validation_failed'], 'emit with a bad Idempotency-Key');
          return;
        }
        if (mutation.kind === 'org') {
          const path = `/v1/orgs/${encodeURIComponent(mutation.slug)}/signals`;
          const answer = await sendJson('POST', path, adminKey, valid);
          expectCleanProblem(answer, ['not_found'], `POST ${path}`);
          return;
        }
        const { answer, allowed } = await sendMutation('POST', '/v1/orgs/bad/signals', adminKey, valid, mutation);
        expectCleanProblem(answer, allowed, 'POST signals');
      },
    );
  });

  it('POST /v1/orgs/{org}/signals/batch: a bad envelope is a problem; all-invalid items answer 200 and write nothing', async () => {
    const item = { type: 'bad.batch.item', payload: { n: 1 }, dedupe_key: 'bad-batch-1' };
    const valid = { signals: [item] };
    const envelopeValid = (value: unknown): value is { signals: unknown[] } =>
      typeof value === 'object' &&
      value !== null &&
      !Array.isArray(value) &&
      Array.isArray((value as { signals?: unknown }).signals) &&
      (value as { signals: unknown[] }).signals.length >= 1 &&
      (value as { signals: unknown[] }).signals.length <= 1000;
    const batchWouldWrite = (value: unknown) => envelopeValid(value) && value.signals.some(emitWouldWrite);

    const invalidItem = fc
      .oneof(
        fc.jsonValue({ maxDepth: 2 }),
        fc.tuple(fc.constantFrom('type', 'payload', 'subject', 'dedupe_key', 'occurred_at', 'schema_version'), spoiled).map(([field, value]) => ({ ...item, [field]: value })),
        fc.constantFrom('org.created', 'directive.approved').map((type) => ({ ...item, type })),
        fc.constantFrom({ s: '\u0000' }, { nested: deeplyNested(300) }).map((payload) => ({ ...item, payload })),
      )
      .map(asSent)
      .filter((value) => !emitWouldWrite(value));
    const allInvalid = fc
      .array(invalidItem, { minLength: 1, maxLength: 12 })
      .map((signals): Mutation => ({ kind: 'json', value: { signals } }));
    const oversizedEnvelope = fc.constant<Mutation>({ kind: 'json', value: { signals: Array.from({ length: 1001 }, () => ({})) } });
    const emptyEnvelope = fc.constant<Mutation>({ kind: 'json', value: { signals: [] } });

    await assertNothingWritten(
      fc.oneof(
        { arbitrary: badBodies(valid, batchWouldWrite), weight: 10 },
        { arbitrary: allInvalid, weight: 8 },
        { arbitrary: oversizedEnvelope, weight: 1 },
        { arbitrary: emptyEnvelope, weight: 1 },
      ),
      async (mutation) => {
        const { answer, allowed } = await sendMutation('POST', '/v1/orgs/bad/signals/batch', adminKey, valid, mutation);
        if (mutation.kind === 'json' && envelopeValid(mutation.value)) {
          const context = `batch ${answer.text.slice(0, 300)}`;
          expect(answer.status, context).toBe(200);
          expect(answer.contentType, context).toContain('application/json');
          expect(answer.body.results, context).toHaveLength(mutation.value.signals.length);
          for (const result of answer.body.results) {
            expect(result.status, context).toBe('invalid');
            expect(result.signal, context).toBeUndefined();
            expect(['validation_failed', 'reserved_type', 'payload_too_large'], context).toContain(result.error.code);
          }
          expectNothingSensitive(answer.text, context);
          return;
        }
        expectCleanProblem(answer, allowed, 'POST batch');
      },
    );
  });
});
