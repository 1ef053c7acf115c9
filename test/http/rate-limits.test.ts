/**
 * Rate limits: a key past its bucket gets 429 `rate_limited` with
 * Retry-After and the RateLimit headers while other keys go on; an org's
 * bucket caps its keys together; unknown keys are refused per address
 * without a lookup; and two server processes on one database share a key's
 * allowance rather than each granting it.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createKeyAuthenticator } from '../../src/auth/authenticate.ts';
import type { Tenant } from '../../src/tenancy/tenant.ts';
import { startServer, type ServerProcess } from '../../scripts/bench/support.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

const LIMITS = {
  SIGNALBUS_RATE_LIMIT_KEY_PER_S: '0.1',
  SIGNALBUS_RATE_LIMIT_KEY_BURST: '5',
  SIGNALBUS_RATE_LIMIT_ORG_PER_S: '0.1',
  SIGNALBUS_RATE_LIMIT_ORG_BURST: '8',
  SIGNALBUS_RATE_LIMIT_UNKNOWN_KEY_PER_S: '0.1',
  SIGNALBUS_RATE_LIMIT_UNKNOWN_KEY_BURST: '3',
};

let t: TestApp;
let org: Tenant;

beforeAll(async () => {
  t = await createTestApp({ env: LIMITS });
  org = await t.createOrg('limited');
});
afterAll(() => t.close());

const list = (key: string) => t.request('GET', '/v1/orgs/limited/signals', { key });

describe('per key and per org', () => {
  it('serves a key its burst with RateLimit headers, then answers 429 with Retry-After, and another key goes on', async () => {
    const first = await t.createKey(org, 'viewer', 'first@limited.test');
    const second = await t.createKey(org, 'viewer', 'second@limited.test');
    const served = [];
    for (let i = 0; i < 5; i++) served.push(await list(first));
    expect(served.map((response) => response.status)).toEqual([200, 200, 200, 200, 200]);
    expect(served[0]!.headers.get('ratelimit-policy')).toBe('"key";q=5;w=50, "org";q=8;w=80');
    expect(served[0]!.headers.get('ratelimit')).toMatch(/^"key";r=4;t=\d+, "org";r=7;t=\d+$/);
    expect(served[4]!.headers.get('ratelimit-remaining')).toBe('0');
    expect(served[4]!.headers.get('ratelimit-limit')).toBe('5');

    const refused = await list(first);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toContain('application/problem+json');
    expect(refused.body.code).toBe('rate_limited');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(refused.headers.get('retry-after'))).toBeLessThanOrEqual(10);
    expect(refused.headers.get('ratelimit-policy')).toBe('"key";q=5;w=50, "org";q=8;w=80');
    expect(refused.text).not.toMatch(/sbk_|select|stack/i);

    // The refused request did not spend the org's allowance: 3 of 8 are left for the others.
    const other = [await list(second), await list(second), await list(second)];
    expect(other.map((response) => response.status)).toEqual([200, 200, 200]);
    expect(other[2]!.headers.get('ratelimit')).toMatch(/"org";r=0;/);
    const orgRefused = await list(second);
    expect(orgRefused.status).toBe(429);
    expect(orgRefused.headers.get('ratelimit')).toMatch(/"org";r=0;/);
  });

  it('leaves another org alone', async () => {
    const elsewhere = await t.createOrg('unlimited');
    const key = await t.createKey(elsewhere, 'viewer');
    expect((await t.request('GET', '/v1/orgs/unlimited/signals', { key })).status).toBe(200);
  });
});

describe('unknown keys', () => {
  it('are refused per source address before any lookup once over the limit', async () => {
    // An authenticator whose every query is counted, in place of the app's.
    let queries = 0;
    const sql = t.app.deps.sql;
    const counting = ((...args: Parameters<typeof sql>) => {
      queries++;
      return sql(...args);
    }) as unknown as typeof sql;
    const original = t.app.deps.authenticator;
    t.app.deps.authenticator = createKeyAuthenticator({ sql: counting });
    const lookups = vi.spyOn(t.app.deps.authenticator, 'authenticate');
    const lookupQueries = async () => queries;
    const answers = [];
    for (let i = 0; i < 12; i++) answers.push(await list(`sbk_unknown_${i}_${'x'.repeat(20)}`));
    expect(answers.map((response) => response.status)).toEqual([401, 401, 401, ...Array(9).fill(429)]);
    expect(answers[3]!.body.code).toBe('rate_limited');
    expect(answers[3]!.headers.get('ratelimit-policy')).toBe('"address";q=3;w=30');
    // Called for every request; the database was reached for the first three only.
    expect(lookups).toHaveBeenCalledTimes(12);
    expect(await lookupQueries()).toBe(3);
    // A key known not to exist, a malformed one and none at all cost no lookup: 401, uncharged.
    expect((await list(`sbk_unknown_0_${'x'.repeat(20)}`)).status).toBe(401);
    expect((await list('not-a-key')).status).toBe(401);
    expect((await t.request('GET', '/v1/orgs/limited/signals')).status).toBe(401);
    t.app.deps.authenticator = original;
  });
});

describe('across server processes', () => {
  const servers: ServerProcess[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((server) => server.stop()));
  });

  it('share one key bucket: two servers on one database grant the burst once, not once each', async () => {
    const shared = await t.createOrg('shared');
    const key = await t.createKey(shared, 'viewer');
    const env = { ...LIMITS, SIGNALBUS_RATE_LIMIT_KEY_BURST: '10', SIGNALBUS_RATE_LIMIT_ORG_PER_S: '0', LOG_LEVEL: 'warn' };
    for (let i = 0; i < 2; i++) servers.push(await startServer(t.database.url, env));
    const started = Date.now();
    const statuses = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        fetch(`${servers[i % 2]!.url}/v1/orgs/shared/signals`, { headers: { authorization: `Bearer ${key}` } }).then(async (response) => {
          await response.arrayBuffer();
          return { server: i % 2, status: response.status, retryAfter: response.headers.get('retry-after') };
        }),
      ),
    );
    const elapsedS = (Date.now() - started) / 1000;
    const served = statuses.filter((answer) => answer.status === 200);
    const refused = statuses.filter((answer) => answer.status === 429);
    expect(served.length + refused.length).toBe(30);
    // The burst, plus what the bucket refilled meanwhile (0.1 per second);
    // each process counting on its own would have served 20.
    expect(served.length).toBeGreaterThanOrEqual(10);
    expect(served.length).toBeLessThanOrEqual(10 + Math.ceil(elapsedS * 0.1));
    expect(new Set(refused.map((answer) => answer.server))).toEqual(new Set([0, 1]));
    for (const answer of refused) expect(Number(answer.retryAfter)).toBeGreaterThanOrEqual(1);
  }, 240_000);
});
