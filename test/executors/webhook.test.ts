/**
 * `webhook.post` end to end: directives run by a worker deliver signed JSON to
 * a Standard Webhooks receiver on loopback, retry what a receiver or the
 * network says is transient (honouring Retry-After), stop at what is final,
 * never follow redirects — and, with private targets disallowed, never open
 * a connection to a loopback, private, link-local or metadata address,
 * whether named by literal or by a name that resolves there.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Directive } from '../../src/directives/store.ts';
import type { ExecuteRequest } from '../../src/executors/registry.ts';
import { createWebhookExecutor, type Resolver, type WebhookExecutorOptions, type WebhookPostParams } from '../../src/executors/webhook/index.ts';
import type { ExecutionFailed } from '../../src/executions/model.ts';
import { putSecret } from '../../src/secrets/vault.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { REDIRECT_TARGET, startWebhookSink, type WebhookSink } from '../fakes/webhook-sink.ts';
import { directRequest, executionSignals, finishedDirective, proposeApproved } from '../support/directives.ts';
import { setPolicy } from '../support/fanout.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

const newSecret = () => `whsec_${randomBytes(24).toString('base64')}`;
const SECRET = newSecret();
const SECRET_BODY = SECRET.slice('whsec_'.length);

let sink: WebhookSink;
beforeAll(async () => {
  sink = await startWebhookSink({ secret: SECRET });
});
afterAll(() => sink.close());

/** A test app with its own worker, private targets allowed or not, an org holding the signing secret and allowing webhooks. */
async function startApp(slug: string, allowPrivateTargets: boolean) {
  const t = await createTestApp({
    env: { SIGNALBUS_ALLOW_PRIVATE_TARGETS: String(allowPrivateTargets), SIGNALBUS_EXECUTOR_RETRY_BASE_MS: '10' },
  });
  const org = await t.createOrg(slug);
  await putSecret(t.app.deps.vault, { tenant: org, name: 'webhook_signing_secret', input: { value: SECRET } });
  await setPolicy(t, org, { rules: [{ id: 'allow-webhooks', match: 'webhook.*', effect: 'allow' }] });
  await t.startWorker({ pollIntervalMs: 50 });
  return { t, org };
}

async function runDirective(t: TestApp, org: Tenant, params: Record<string, unknown>): Promise<Directive> {
  const directive = await proposeApproved(t, { tenant: org, actor: { type: 'human', id: `ops@${org.slug}.test` } }, { kind: 'webhook.post', params });
  return finishedDirective(t, org, directive.id);
}

const signalsOf = <T>(t: TestApp, org: Tenant, type: string, directive: Directive) => executionSignals<T>(t, org, type, directive.id);

/** A request as the execute job builds it, for calling an executor directly. */
function requestFor(
  params: WebhookPostParams,
  { directiveId = `dir_${randomBytes(8).toString('hex')}`, secret = SECRET }: { directiveId?: string; secret?: string | null } = {},
): ExecuteRequest<WebhookPostParams> {
  return directRequest({ directiveId, kind: 'webhook.post', params, idempotencyKey: directiveId, orgId: 'org_direct', secrets: { webhook_signing_secret: secret ?? undefined } });
}

/** A resolver that maps names to fixed answers and counts its calls. */
function fakeDns(answers: Record<string, string[]>) {
  const calls: string[] = [];
  const resolve: Resolver = async (hostname) => {
    calls.push(hostname);
    return (answers[hostname] ?? []).map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return { resolve, calls };
}

describe('delivery through a worker (private targets allowed, the sink is on loopback)', () => {
  let t: TestApp;
  let org: Tenant;
  beforeAll(async () => {
    ({ t, org } = await startApp('webhooks', true));
  });
  afterAll(() => t.close());
  beforeEach(() => sink.reset());

  it('posts signed JSON whose webhook-id is the directive id and records a redacted summary', async () => {
    const body = { order: 42, items: [{ sku: 'a', qty: 2 }], note: 'héllo' };
    const directive = await runDirective(t, org, { url: `${sink.url}/hooks/orders?v=1`, body, headers: { 'X-Tenant': 'acme' } });

    expect(directive).toMatchObject({
      status: 'succeeded',
      attempts: 1,
      error: null,
      result: { status: 204, url_host: `127.0.0.1:${sink.port}`, webhook_id: directive.id },
    });
    expect(Object.keys(directive.result as object).sort()).toEqual(['status', 'url_host', 'webhook_id']);
    expect(sink.calls).toMatchObject({ requests: 1, rejected: 0, effects: 1, duplicates: 0 });
    const [delivery] = sink.deliveries;
    expect(delivery).toMatchObject({ webhookId: directive.id, path: '/hooks/orders', body, status: 204 });
    expect(delivery!.headers).toMatchObject({ 'content-type': 'application/json', 'x-tenant': 'acme', 'webhook-id': directive.id });
    expect(delivery!.headers['webhook-signature']).toMatch(/^v1,/);
    expect(Math.abs(Number(delivery!.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(60);

    // The signing secret is nowhere in what the bus recorded.
    const [leaks] = await t.app.deps.sql<{ count: number }[]>`
      select count(*)::int as count from ${t.app.deps.sql(`${org.schema}.signals`)} where payload::text like ${`%${SECRET_BODY}%`}`;
    expect(leaks!.count).toBe(0);
  });

  it('does not follow a redirect: a permanent failure, and the redirect target sees nothing', async () => {
    sink.behaveAt('/moved', { mode: 'redirect' });
    const directive = await runDirective(t, org, { url: `${sink.url}/moved`, body: { n: 1 } });
    expect(directive).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'webhook_redirected' } });
    expect(sink.requestsAt('/moved')).toBe(1);
    expect(sink.requestsAt(REDIRECT_TARGET)).toBe(0);
    expect(sink.calls.effects).toBe(0);
  });

  it('stops at a 4xx: permanent after one call', async () => {
    sink.failNext('400');
    const directive = await runDirective(t, org, { url: `${sink.url}/hooks`, body: { n: 2 } });
    expect(directive).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'webhook_rejected', message: `127.0.0.1:${sink.port} answered 400` } });
    expect(sink.calls.requests).toBe(1);
    expect(await signalsOf<ExecutionFailed>(t, org, 'execution.failed', directive)).toMatchObject([{ attempt: 1, final: true, retry_at: null }]);
  });

  it('retries a 5xx and succeeds, with the same webhook-id on both attempts', async () => {
    sink.failNext('500');
    const directive = await runDirective(t, org, { url: `${sink.url}/hooks`, body: { n: 3 } });
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 2, result: { status: 204, webhook_id: directive.id } });
    expect(sink.deliveries.map((delivery) => [delivery.webhookId, delivery.status])).toEqual([
      [directive.id, 500],
      [directive.id, 204],
    ]);
    expect(sink.calls.effects).toBe(1);
    const [failure] = await signalsOf<ExecutionFailed>(t, org, 'execution.failed', directive);
    expect(failure).toMatchObject({ attempt: 1, final: false, error: { code: 'webhook_server_error' } });
  });

  it('waits out a 429 for at least its Retry-After, though the backoff alone would retry sooner', async () => {
    sink.failNext('429', { retryAfterSeconds: 1 });
    const directive = await runDirective(t, org, { url: `${sink.url}/hooks`, body: { n: 4 } });
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 2 });
    const [failure] = await signalsOf<ExecutionFailed>(t, org, 'execution.failed', directive);
    expect(failure).toMatchObject({ attempt: 1, final: false, error: { code: 'webhook_rate_limited' } });
    const [retried] = await signalsOf<{ attempt: number; started_at: string }>(t, org, 'execution.succeeded', directive);
    const failedAt = new Date(failure!.finished_at).getTime();
    // Base 10 ms: without Retry-After the retry would be due within 10 ms.
    expect(new Date(failure!.retry_at!).getTime() - failedAt).toBeGreaterThanOrEqual(1000);
    expect(new Date(retried!.started_at).getTime() - failedAt).toBeGreaterThanOrEqual(1000);
    const [first, second] = sink.deliveries;
    expect(second!.receivedAt.getTime() - first!.receivedAt.getTime()).toBeGreaterThanOrEqual(1000);
    expect(sink.calls.effects).toBe(1);
  });

  it('retries after a response timeout', async () => {
    sink.failNext('hang');
    const directive = await runDirective(t, org, { url: `${sink.url}/hooks`, body: { n: 5 }, timeout_ms: 200 });
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 2 });
    const [failure] = await signalsOf<ExecutionFailed>(t, org, 'execution.failed', directive);
    expect(failure).toMatchObject({ attempt: 1, final: false, error: { code: 'response_timeout', message: `127.0.0.1:${sink.port} did not answer within 200 ms` } });
    expect(failure!.duration_ms).toBeGreaterThanOrEqual(190);
    expect(sink.calls.effects).toBe(1);
  });
});

describe('the executor called directly', () => {
  beforeEach(() => sink.reset());
  const loopback = (options: Partial<WebhookExecutorOptions> = {}) => createWebhookExecutor({ allowPrivateTargets: true, ...options });

  it('redelivers a directive under the same webhook-id: one effect at the receiver', async () => {
    const executor = loopback();
    const request = requestFor({ url: `${sink.url}/hooks`, body: { n: 6 } });
    const first = await executor.execute(request);
    const second = await executor.execute({ ...request, attempt: 2, priorOutcomeUnknown: true });
    expect(first).toEqual({ outcome: 'succeeded', result: { status: 204, url_host: `127.0.0.1:${sink.port}`, webhook_id: request.directiveId } });
    expect(second).toEqual(first);
    expect(sink.deliveries.map((delivery) => delivery.webhookId)).toEqual([request.directiveId, request.directiveId]);
    expect(sink.calls).toMatchObject({ requests: 2, effects: 1, duplicates: 1 });
  });

  it('keeps the connection to a receiver open across deliveries, and a stricter executor never reuses it', async () => {
    const executor = loopback();
    for (const n of [1, 2, 3]) {
      expect(await executor.execute(requestFor({ url: `${sink.url}/hooks`, body: { n } }))).toMatchObject({ outcome: 'succeeded' });
    }
    expect(sink.calls).toMatchObject({ connections: 1, effects: 3 });
    const strict = createWebhookExecutor({ allowPrivateTargets: false, lookup: fakeDns({ 'hooks.example.test': ['127.0.0.1'] }).resolve });
    const refused = await strict.execute(requestFor({ url: `http://hooks.example.test:${sink.port}/hooks`, body: {} }));
    expect(refused).toMatchObject({ outcome: 'permanent', error: { code: 'ssrf_refused' } });
    expect(sink.calls).toMatchObject({ connections: 1, effects: 3 });
  });

  it('fails for good without a signing secret, or with one that is not whsec_, before connecting', async () => {
    const executor = loopback();
    const missing = await executor.execute(requestFor({ url: `${sink.url}/hooks`, body: {} }, { secret: null }));
    expect(missing).toEqual({ outcome: 'permanent', error: { code: 'missing_credential', message: 'the webhook_signing_secret credential is not set' } });
    const garbled = await executor.execute(requestFor({ url: `${sink.url}/hooks`, body: {} }, { secret: 'whsec_%%%not-base64%%%' }));
    expect(garbled).toMatchObject({ outcome: 'permanent', error: { code: 'invalid_credential' } });
    expect(JSON.stringify(garbled)).not.toContain('not-base64');
    expect(sink.calls.connections).toBe(0);
  });

  it('a receiver refusing the signature (another secret) is a permanent failure', async () => {
    const result = await loopback().execute(requestFor({ url: `${sink.url}/hooks`, body: {} }, { secret: newSecret() }));
    expect(result).toMatchObject({ outcome: 'permanent', error: { code: 'webhook_rejected', message: `127.0.0.1:${sink.port} answered 401` } });
    expect(sink.calls).toMatchObject({ rejected: 1, effects: 0 });
  });

  it('gives up connecting after the connect timeout (a resolver that never answers), retryably', async () => {
    const executor = loopback({ connectTimeoutMs: 100, lookup: () => new Promise(() => {}) });
    const result = await executor.execute(requestFor({ url: 'http://stuck.example.test/hooks', body: {} }));
    expect(result).toEqual({ outcome: 'retryable', error: { code: 'connect_timeout', message: 'connecting to stuck.example.test took longer than 100 ms' } });
  });

  it('a closed port is a retryable network error', async () => {
    const closed = await startWebhookSink({ secret: SECRET });
    const url = `${closed.url}/hooks`;
    await closed.close();
    const result = await loopback().execute(requestFor({ url, body: {} }));
    expect(result).toMatchObject({ outcome: 'retryable', error: { code: 'network_error' } });
  });

  it('connects to the address its resolver gave, sending the name as Host', async () => {
    const dns = fakeDns({ 'hooks.example.test': ['127.0.0.1'] });
    const result = await loopback({ lookup: dns.resolve }).execute(requestFor({ url: `http://hooks.example.test:${sink.port}/named`, body: { n: 7 } }));
    expect(result).toMatchObject({ outcome: 'succeeded', result: { url_host: `hooks.example.test:${sink.port}` } });
    expect(sink.deliveries[0]!.headers.host).toBe(`hooks.example.test:${sink.port}`);
    expect(dns.calls).toEqual(['hooks.example.test']);
  });
});

describe('the SSRF guard (private targets disallowed)', () => {
  let t: TestApp;
  let org: Tenant;
  beforeAll(async () => {
    ({ t, org } = await startApp('webhooks_ssrf', false));
  });
  afterAll(() => t.close());
  beforeEach(() => sink.reset());

  it('refuses loopback, private, link-local, metadata and local names without a single connection', async () => {
    const targets = [
      `http://127.0.0.1:${sink.port}/hooks`,
      'http://10.0.0.1/hooks',
      'http://169.254.169.254/latest/meta-data/',
      `http://[::1]:${sink.port}/hooks`,
      `http://localhost:${sink.port}/hooks`,
      `http://[::ffff:127.0.0.1]:${sink.port}/hooks`,
      `http://2130706433:${sink.port}/hooks`,
      `http://0.0.0.0:${sink.port}/hooks`,
      'http://100.64.0.1/hooks',
      'http://metadata.google.internal/computeMetadata/v1/',
    ];
    const directives = await Promise.all(targets.map((url) => runDirective(t, org, { url, body: { probe: url } })));
    for (const [index, directive] of directives.entries()) {
      expect(directive, targets[index]).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'ssrf_refused' } });
    }
    expect(directives[0]!.error!.message).toBe(`refused to deliver to 127.0.0.1:${sink.port}: 127.0.0.1 is a loopback address`);
    expect(sink.calls.connections).toBe(0);
    expect(sink.calls.requests).toBe(0);
  });

  it('refuses a name that resolves to loopback, checked on the resolved address, with no connection', async () => {
    const dns = fakeDns({ 'hooks.example.test': ['127.0.0.1'], 'mixed.example.test': ['93.184.216.34', '::ffff:127.0.0.1'] });
    const executor = createWebhookExecutor({ allowPrivateTargets: false, lookup: dns.resolve });
    const named = await executor.execute(requestFor({ url: `http://hooks.example.test:${sink.port}/hooks`, body: {} }));
    expect(named).toEqual({
      outcome: 'permanent',
      error: { code: 'ssrf_refused', message: `refused to deliver to hooks.example.test:${sink.port}: hooks.example.test resolves to 127.0.0.1, a loopback address` },
    });
    const mixed = await executor.execute(requestFor({ url: `http://mixed.example.test:${sink.port}/hooks`, body: {} }));
    expect(mixed).toMatchObject({ outcome: 'permanent', error: { code: 'ssrf_refused' } });
    expect(dns.calls).toEqual(['hooks.example.test', 'mixed.example.test']);
    expect(sink.calls.connections).toBe(0);
  });
});
