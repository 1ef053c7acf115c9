/**
 * Request logging: every response carries `x-request-id` (errors and unknown
 * routes included), every request writes exactly one wide log line under that
 * id with its route, status, duration and org, and a canary API key secret —
 * sent as the bearer of successful and failing requests, in bodies and in
 * query strings — never reaches a log line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { callRoute, type RouteResponse } from '../support/routes.ts';

interface LogLine {
  msg?: string;
  request_id?: string;
  method?: string;
  route?: string;
  org?: string;
  status?: number;
  duration_ms?: number;
  [field: string]: unknown;
}

interface Case {
  name: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: unknown;
  rawBody?: string;
  status: number;
  /** The route template the line names, when the request matched one. */
  route?: string;
  /** The org slug the line names; `null` when the test does not care. */
  org?: string | null;
}

let t: TestApp;
let org: Tenant;
let canary: string;
let admin: string;

const parsedLogs = (): LogLine[] => t.logs.map((line) => JSON.parse(line) as LogLine);
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('logs');
  await t.createOrg('logs_other');
  canary = await t.createKey(org, 'operator', 'canary@logs.test');
  admin = await t.createKey(org, 'admin');
});
afterAll(() => t.close());

function cases(): Case[] {
  const bearer = { authorization: `Bearer ${canary}` };
  const signals = '/v1/orgs/logs/signals';
  return [
    { name: 'health', method: 'GET', path: '/healthz', status: 200 },
    { name: 'emit', method: 'POST', path: signals, headers: bearer, body: { type: 'logs.checked', payload: { n: 1 } }, status: 201, route: '/v1/orgs/:org/signals', org: 'logs' },
    {
      name: 'emit with the secret in body fields',
      method: 'POST',
      path: signals,
      headers: bearer,
      body: { type: 'logs.checked', subject: canary.slice(0, 40), payload: { api_key: canary }, dedupe_key: canary },
      status: 201,
      org: 'logs',
    },
    { name: 'list with the secret in the query', method: 'GET', path: `${signals}?subject=${canary}&api_key=${canary}&token=${canary}`, headers: bearer, status: 200, route: '/v1/orgs/:org/signals', org: 'logs' },
    { name: 'secret as a cursor', method: 'GET', path: `${signals}?after=${canary}`, headers: bearer, status: 422, route: '/v1/orgs/:org/signals', org: 'logs' },
    { name: 'get', method: 'GET', path: `${signals}/sig_00000000000000000000000000`, headers: bearer, status: 404, route: '/v1/orgs/:org/signals/:id', org: 'logs' },
    { name: 'role too weak, secret in body', method: 'POST', path: '/v1/orgs/logs/api-keys', headers: bearer, body: { name: canary, role: 'admin' }, status: 403, route: '/v1/orgs/:org/api-keys', org: 'logs' },
    { name: 'another org', method: 'POST', path: '/v1/orgs/logs_other/signals', headers: bearer, body: { type: 'logs.checked', payload: {} }, status: 404, org: null },
    { name: 'invalid body echoing nothing', method: 'POST', path: signals, headers: bearer, body: { type: canary, payload: canary }, status: 422, route: '/v1/orgs/:org/signals', org: 'logs' },
    { name: 'malformed JSON', method: 'POST', path: signals, headers: bearer, rawBody: `{"secret": "${canary}"`, status: 400, org: 'logs' },
    { name: 'too large', method: 'POST', path: signals, headers: bearer, body: { type: 'logs.checked', payload: { blob: canary.repeat(10_000) } }, status: 413, org: 'logs' },
    { name: 'wrong content type', method: 'POST', path: signals, headers: { ...bearer, 'content-type': 'text/plain' }, rawBody: canary, status: 415, org: 'logs' },
    { name: 'unknown route', method: 'GET', path: `/v1/nothing-here?key=${canary}`, headers: bearer, status: 404, org: null },
    { name: 'secret with a suffix', method: 'GET', path: signals, headers: { authorization: `Bearer ${canary}x` }, status: 401, org: null },
    { name: 'secret under another scheme', method: 'GET', path: signals, headers: { authorization: `Basic ${canary}` }, status: 401, org: null },
    { name: 'secret as a key id', method: 'DELETE', path: `/v1/orgs/logs/api-keys/${canary}`, headers: { authorization: `Bearer ${admin}` }, status: 404, route: '/v1/orgs/:org/api-keys/:id', org: 'logs' },
    { name: 'no key', method: 'GET', path: signals, status: 401, org: null },
  ];
}

async function run(test: Case): Promise<RouteResponse> {
  if (test.rawBody !== undefined) {
    const response = await t.request(test.method, test.path, { rawBody: test.rawBody, headers: test.headers ?? {} });
    return { status: response.status, headers: response.headers, text: response.text, body: response.body };
  }
  return callRoute(t.app, test.method, test.path, { headers: test.headers ?? {}, ...(test.body !== undefined ? { body: test.body } : {}) });
}

describe('request ids and wide log lines', () => {
  it('answer every request with an x-request-id and log exactly one line under it', async () => {
    for (const test of cases()) {
      const response = await run(test);
      expect(response.status, `${test.name}: ${response.text.slice(0, 200)}`).toBe(test.status);
      const requestId = response.headers.get('x-request-id');
      expect(requestId, test.name).toMatch(REQUEST_ID);
      if (response.headers.get('content-type')?.includes('application/problem+json')) {
        expect(response.body.request_id, test.name).toBe(requestId);
      }
      const lines = await waitFor(() => {
        const found = parsedLogs().filter((line) => line.request_id === requestId);
        return found.length > 0 && found;
      }, 5_000, `the log line of ${test.name}`);
      expect(lines, test.name).toHaveLength(1);
      const [line] = lines;
      expect(line!.msg, test.name).toBe('request');
      expect(line!.method, test.name).toBe(test.method);
      expect(line!.status, test.name).toBe(test.status);
      expect(typeof line!.route, test.name).toBe('string');
      if (test.route) expect(line!.route, test.name).toBe(test.route);
      expect(typeof line!.duration_ms, test.name).toBe('number');
      expect(line!.duration_ms!, test.name).toBeGreaterThanOrEqual(0);
      if (test.org !== null) expect(line!.org, test.name).toBe(test.org);
    }
  });

  it('gives concurrent requests distinct ids, each logged once', async () => {
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, index) =>
        t.request('GET', index % 2 ? '/v1/orgs/logs/signals' : '/v1/unknown', { key: admin }),
      ),
    );
    const ids = responses.map((response) => response.headers.get('x-request-id'));
    expect(new Set(ids).size).toBe(ids.length);
    await waitFor(() => ids.every((id) => parsedLogs().some((line) => line.request_id === id)), 5_000, 'all lines');
    for (const id of ids) expect(parsedLogs().filter((line) => line.request_id === id)).toHaveLength(1);
  });

  it('keeps a well-formed incoming x-request-id and replaces a malformed one', async () => {
    const kept = await t.request('GET', '/v1/orgs/logs/signals', { key: admin, headers: { 'x-request-id': 'client-trace.42:a_b' } });
    expect(kept.headers.get('x-request-id')).toBe('client-trace.42:a_b');
    for (const bad of ['has space', 'x'.repeat(129), 'slash/not-allowed', '{"json":1}']) {
      const response = await t.request('GET', '/v1/nope', { headers: { 'x-request-id': bad } });
      const id = response.headers.get('x-request-id');
      expect(id).toMatch(REQUEST_ID);
      expect(id).not.toBe(bad);
      expect(response.body.request_id).toBe(id);
    }
    await waitFor(() => parsedLogs().some((line) => line.request_id === 'client-trace.42:a_b'), 5_000, 'the kept id');
  });
});

describe('the canary secret', () => {
  it('is accepted as a key (so the requests above really carried it)', async () => {
    const response = await t.request('GET', '/v1/orgs/logs/signals', { key: canary });
    expect(response.status).toBe(200);
  });

  it('never appears in any log line, whole or in part', async () => {
    // Make sure every request above has been logged before grepping.
    for (const test of cases()) await run(test);
    const marker = await t.request('GET', '/healthz', { key: canary });
    const markerId = marker.headers.get('x-request-id');
    await waitFor(() => parsedLogs().some((line) => line.request_id === markerId), 5_000, 'the marker line');
    expect(t.logs.length).toBeGreaterThan(cases().length);
    const body = canary.slice('sbk_'.length);
    const fragments = [canary, body, body.slice(0, 16), body.slice(-16)];
    for (const line of t.logs) {
      for (const fragment of fragments) expect(line.includes(fragment), `log line leaks the secret: ${line.slice(0, 300)}`).toBe(false);
    }
  });

  it('is not echoed in error bodies either', async () => {
    for (const test of cases().filter((item) => item.status >= 400)) {
      const response = await run(test);
      expect(response.text.includes(canary), `${test.name} echoes the secret`).toBe(false);
    }
  });
});
