/**
 * webhook-relay end to end, through the worker: two senders, each with its
 * own installation and endpoint — a generic HMAC sender on the shipped
 * webhook-relay, and a Standard Webhooks sender on `sw-relay`, a copy of it
 * published here into a registry copy with the `standard-webhooks` scheme
 * (no shipped package receives Standard Webhooks). Signed deliveries become
 * signals deduplicated on the sender's event id; the relay rules post the
 * chosen types to the installation's endpoint (a Standard Webhooks sink that
 * verifies and dedupes), nothing for other types, nothing again for a
 * redelivery, and nothing of one sender to the other's endpoint.
 */
import { createHmac } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { builtinExecutors } from '../../src/executors/builtin.ts';
import { createExecutorRegistry } from '../../src/executors/registry.ts';
import { REGISTRY_DIR } from '../../src/packages/registry-files.ts';
import { publishVersion } from '../../src/packages/registry.ts';
import { startWebhookSink, type WebhookSink } from '../fakes/webhook-sink.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { installedPackage } from '../support/installations.ts';
import { waitQuiescent } from '../support/quiescent.ts';

const HMAC_KEY = 'relay-e2e-hmac-key';
const SW_INBOUND = 'whsec_c3ctcmVsYXktaW5ib3VuZC1zZWNyZXQ=';
const OUT_A = 'whsec_cmVsYXktb3V0Ym91bmQtYQ==';
const OUT_B = 'whsec_cmVsYXktb3V0Ym91bmQtYg==';

let registry: string;
let t: TestApp;
let org: Tenant;
let sinkA: WebhookSink;
let sinkB: WebhookSink;
let hmacHook: string;
let swHook: string;

/** `sw-relay@1.0.0`: webhook-relay@1.0.1 as published, reading Standard Webhooks deliveries instead. */
async function publishStandardWebhooksRelay(dir: string) {
  const relay = JSON.parse(await readFile(path.join(dir, 'webhook-relay', '1.0.1', 'manifest.json'), 'utf8'));
  const manifest = {
    ...relay,
    name: 'sw-relay',
    version: '1.0.0',
    description: 'webhook-relay for a Standard Webhooks sender (test fixture).',
    secrets: [{ name: 'inbound_signing_secret', description: 'the sender’s whsec_ secret' }, relay.secrets[1]],
    webhook: {
      scheme: 'standard-webhooks',
      secret: 'inbound_signing_secret',
      tolerance_seconds: 300,
      event: {
        id: "headers['webhook-id']",
        type: "'relay.event.received'",
        payload: "{'event_id': dyn(headers['webhook-id']), 'event_type': dyn(string(body.type)), 'data': body}",
      },
    },
  };
  const source = await mkdtemp(path.join(tmpdir(), 'signalbus-sw-relay-'));
  await writeFile(path.join(source, 'manifest.json'), JSON.stringify(manifest));
  const context = { executors: createExecutorRegistry(builtinExecutors({ allowPrivateTargets: true })), now: () => new Date() };
  await publishVersion(dir, source, context);
  await rm(source, { recursive: true, force: true });
}

beforeAll(async () => {
  registry = await mkdtemp(path.join(tmpdir(), 'signalbus-relay-e2e-'));
  await cp(REGISTRY_DIR, registry, { recursive: true });
  await publishStandardWebhooksRelay(registry);
  sinkA = await startWebhookSink({ secret: OUT_A });
  sinkB = await startWebhookSink({ secret: OUT_B });
  t = await createTestApp({
    env: { SIGNALBUS_REGISTRY_DIR: registry, SIGNALBUS_ALLOW_PRIVATE_TARGETS: 'true', SIGNALBUS_EXECUTOR_RETRY_BASE_MS: '200' },
  });
  org = await t.createOrg('relay_e2e');
  // The org's policy allows nothing by itself: the package's rule allows posts to the configured endpoint.
  hmacHook = await installedPackage(t, org, {
    package: 'webhook-relay',
    version: '1.0.1',
    config: { endpoint_url: `${sinkA.url}/a`, forward_types: ['order.paid'], send_test_ping: false },
    secrets: { inbound_hmac_secret: HMAC_KEY, webhook_signing_secret: OUT_A },
  });
  swHook = await installedPackage(t, org, {
    package: 'sw-relay',
    config: { endpoint_url: `${sinkB.url}/b`, forward_types: ['invoice.created', 'order.paid'], send_test_ping: false },
    secrets: { inbound_signing_secret: SW_INBOUND, webhook_signing_secret: OUT_B },
  });
  await t.startWorker({ concurrency: 2, pollIntervalMs: 500 });
});

afterAll(async () => {
  await t?.close();
  await sinkA?.close();
  await sinkB?.close();
  if (registry) await rm(registry, { recursive: true, force: true });
});

const post = (id: string, body: string, headers: Record<string, string>) =>
  t.request('POST', `/v1/hooks/${id}`, { rawBody: body, headers: { 'content-type': 'application/json', ...headers } });

function hmacDelivery(event: { id: string; type: string; data: unknown }) {
  const body = JSON.stringify(event);
  return post(hmacHook, body, { 'x-signature-256': `sha256=${createHmac('sha256', HMAC_KEY).update(body).digest('hex')}` });
}

function swDelivery(messageId: string, event: { type: string; data: unknown }) {
  // A retry sends the same body with a fresh signature.
  const body = JSON.stringify({ ...event, timestamp: '2026-12-04T09:00:00Z' });
  const at = new Date();
  const signature = new Webhook(SW_INBOUND).sign(messageId, at, body);
  return post(swHook, body, { 'webhook-id': messageId, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': signature });
}

const relayed = (sink: WebhookSink) => sink.deliveries.filter((row) => row.status === 204).map((row) => row.body);

describe('webhook-relay', () => {
  it('relays the chosen types of each sender to its own endpoint, once, and nothing else', async () => {
    const paid = await hmacDelivery({ id: 'ord_evt_1', type: 'order.paid', data: { order: 'o-1', total: 4200 } });
    expect(paid.status, paid.text).toBe(200);
    expect(paid.body.deduplicated).toBe(false);
    const viewed = await hmacDelivery({ id: 'ord_evt_2', type: 'order.viewed', data: { order: 'o-1' } });
    expect(viewed.body.deduplicated).toBe(false);
    // The sender retries: the same event is the same signal, whatever the body's order.
    const again = await hmacDelivery({ id: 'ord_evt_1', type: 'order.paid', data: { order: 'o-1', total: 4200 } });
    expect(again.body).toEqual({ signal_id: paid.body.signal_id, deduplicated: true });
    const forged = await post(hmacHook, '{"id":"ord_evt_3","type":"order.paid"}', { 'x-signature-256': 'sha256=00' });
    expect(forged.status).toBe(401);

    const invoice = await swDelivery('msg_inv_1', { type: 'invoice.created', data: { invoice: 'in_1' } });
    expect(invoice.status, invoice.text).toBe(200);
    expect(invoice.body.deduplicated).toBe(false);
    expect((await swDelivery('msg_inv_1', { type: 'invoice.created', data: { invoice: 'in_1' } })).body).toEqual({ signal_id: invoice.body.signal_id, deduplicated: true });
    expect((await swDelivery('msg_login_1', { type: 'user.login', data: { user: 'u-1' } })).body.deduplicated).toBe(false);
    const badSw = await post(swHook, '{"type":"invoice.created"}', { 'webhook-id': 'msg_x', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': 'v1,AAAA' });
    expect(badSw.status).toBe(401);

    const viewer = await t.createKey(org, 'viewer');
    // A page shows what committed below every open transaction's horizon: wait for all four.
    const signals = await waitFor(async () => {
      const response = await t.request('GET', `/v1/orgs/${org.slug}/signals?type=relay.event.received&limit=100`, { key: viewer });
      return response.body.data.length >= 4 && response;
    }, 20_000, 'the four signals to be listed');
    expect(signals.body.data.map((row: { dedupe_key: string; installation_id: string }) => [row.dedupe_key, row.installation_id])).toEqual([
      ['webhook-relay:ord_evt_1', hmacHook],
      ['webhook-relay:ord_evt_2', hmacHook],
      ['sw-relay:msg_inv_1', swHook],
      ['sw-relay:msg_login_1', swHook],
    ]);

    await waitQuiescent(t.app.deps.sql, org, { handlers: 2 });
    expect(relayed(sinkA)).toEqual([{ type: 'order.paid', id: 'ord_evt_1', data: { id: 'ord_evt_1', type: 'order.paid', data: { order: 'o-1', total: 4200 } } }]);
    expect(relayed(sinkB)).toEqual([{ type: 'invoice.created', id: 'msg_inv_1', data: expect.objectContaining({ type: 'invoice.created', data: { invoice: 'in_1' } }) }]);
    expect([sinkA.calls.rejected, sinkB.calls.rejected, sinkA.calls.duplicates, sinkB.calls.duplicates]).toEqual([0, 0, 0, 0]);
    expect(sinkA.requestsAt('/a') + sinkB.requestsAt('/b')).toBe(2);
  });
});
