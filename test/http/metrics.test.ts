/**
 * Operational telemetry on a real app: `GET /metrics` answers a platform key in Prometheus
 * text, with the oldest-job gauge read from graphile-worker at
 * scrape time, and every request leaves a SERVER span named by its route.
 */
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/auth/api-keys.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import type { Metrics } from '../../src/telemetry/metrics.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

const exporter = new InMemorySpanExporter();
let t: TestApp;
let org: Tenant;
let admin: string;
let metrics: Metrics;

beforeAll(async () => {
  t = await createTestApp({ spanExporter: exporter });
  org = await t.createOrg('metrics');
  admin = await t.createKey(org, 'admin');
  metrics = t.app.deps.metrics!;
});
afterAll(() => t.close());

const REMOTE_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';

describe('GET /metrics', () => {
  it('refuses a scrape without a platform key', async () => {
    expect((await t.request('GET', '/metrics')).status).toBe(401);
    expect((await t.request('GET', '/metrics', { key: admin })).status).toBe(403);
    const support = await createApiKey(t.app.deps, {
      tenant: null,
      input: { name: 'scraper', role: 'support', actor: { type: 'agent', id: 'prometheus' } },
      by: PLATFORM_ACTOR,
    });
    expect((await t.request('GET', '/metrics', { key: support.secret })).status).toBe(200);
  });

  it('serves every metric in Prometheus text to a platform key, tenant type families folded into other', async () => {
    for (const n of [1, 2, 3]) {
      const emitted = await t.request('POST', `/v1/orgs/${org.slug}/signals`, { key: admin, body: { type: 'probe.checked', payload: { n } } });
      expect(emitted.status).toBe(201);
    }
    // The emit path reports through these once wired; called directly here.
    metrics.signalsEmitted('stripe.charge.refunded', 2);
    metrics.dedupeHits();
    metrics.jobLatency('handle_signal', 0.2);
    metrics.directiveDecision('deny');
    metrics.executionFailed('refund-on-dispute', false);

    metrics.signalsEmitted('directive.approved');
    const response = await t.request('GET', '/metrics', { key: t.platformKey });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4; charset=utf-8$/);
    for (const name of [
      'signalbus_signals_emitted_total',
      'signalbus_signals_deduplicated_total',
      'signalbus_job_latency_seconds',
      'signalbus_directive_decisions_total',
      'signalbus_execution_failures_total',
      'signalbus_oldest_unprocessed_job_age_seconds',
    ]) {
      expect(response.text).toContain(`# TYPE ${name} `);
    }
    // Tenants choose their types: no family of theirs is named, only the platform's own.
    expect(response.text).not.toMatch(/family="(stripe|probe)"/);
    expect(response.text).toContain('signalbus_signals_emitted_total{family="other"} 5');
    expect(response.text).toContain('signalbus_signals_emitted_total{family="directive"} 1');
    expect(response.text).toContain('signalbus_job_latency_seconds_bucket{le="0.25",task="handle_signal"} 1');
    expect(response.text).toContain('signalbus_execution_failures_total{handler="refund-on-dispute",final="false"} 1');
    expect(response.text).toMatch(/^signalbus_oldest_unprocessed_job_age_seconds \d+(\.\d+)?$/m);
  });

  it('reads the oldest runnable job age from graphile-worker at scrape time', async () => {
    // No worker knows this task, so nothing picks it up while the test looks.
    await t.app.deps.sql`select graphile_worker.add_job('metrics_probe', '{}'::json, run_at => now() - interval '30 seconds')`;
    const response = await t.request('GET', '/metrics', { key: t.platformKey });
    const age = Number(/^signalbus_oldest_unprocessed_job_age_seconds (\S+)$/m.exec(response.text)?.[1]);
    expect(age).toBeGreaterThanOrEqual(30);
    expect(age).toBeLessThan(600);
  });
});

describe('request spans', () => {
  it('opens a SERVER span per request, named by route and child of the caller traceparent', async () => {
    exporter.reset();
    const traceparent = `00-${REMOTE_TRACE}-00f067aa0ba902b7-01`;
    const response = await t.request('POST', `/v1/orgs/${org.slug}/signals`, {
      key: admin,
      body: { type: 'probe.traced', payload: {} },
      headers: { traceparent },
    });
    expect(response.status).toBe(201);
    const span = exporter.getFinishedSpans().find((candidate) => candidate.name === 'HTTP POST /v1/orgs/:org/signals');
    expect(span).toBeDefined();
    expect(span!.kind).toBe(SpanKind.SERVER);
    expect(span!.spanContext().traceId).toBe(REMOTE_TRACE);
    expect(span!.attributes).toMatchObject({ 'http.method': 'POST', 'http.route': '/v1/orgs/:org/signals', 'http.response.status_code': 201 });
  });
});
