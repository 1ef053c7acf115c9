import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import type { Handler } from '../../src/handlers/registry.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

const proposer: Handler = {
  id: 'trace.proposer',
  on: ['traced.order.placed'],
  handle(signal, tools) {
    tools.propose({ kind: 'noop.record', params: { order: signal.payload.id }, key: 'record' });
  },
};

const exporter = new InMemorySpanExporter();
let t: TestApp;
let org: Tenant;
let operator: string;

beforeAll(async () => {
  t = await createTestApp({ handlers: [proposer], spanExporter: exporter });
  org = await t.createOrg('traced');
  operator = await t.createKey(org, 'operator');
  await updatePolicy(t.app.deps.bus.emit, {
    ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'system' },
    input: { rules: [{ id: 'allow-noop', match: 'noop.*', effect: 'allow' }] },
  });
  await t.startWorker();
});
afterAll(() => t.close());

const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

describe('one trace from request to directive execution', () => {
  it('links request → emit → handler job → handler → directive job → executor, and stores the traceparent', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const response = await t.request('POST', `/v1/orgs/${org.slug}/signals`, {
      key: operator,
      headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
      body: { type: 'traced.order.placed', subject: 'order:7', payload: { id: 'o7' } },
    });
    expect(response.status).toBe(201);
    expect(response.body.signal.trace).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));

    const spans = await waitFor(() => {
      const finished = exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
      return finished.some((span) => span.name === 'job execute_directive') ? finished : undefined;
    }, 15_000, 'the directive job span');
    const byName = (name: string) => {
      const found = spans.find((span) => span.name === name);
      expect(found, `span ${name}`).toBeDefined();
      return found!;
    };
    const request = byName('HTTP POST /v1/orgs/:org/signals');
    const emitSpan = byName('signals.emit');
    const handlerJob = byName('job handle_signal');
    const handler = byName('handler trace.proposer');
    const directiveJob = byName('job execute_directive');
    const executor = byName('executor noop.record');

    expect(parentOf(request)).toBe('00f067aa0ba902b7');
    expect(parentOf(emitSpan)).toBe(request.spanContext().spanId);
    // The stored traceparent is the emit span, and the handler job continues from it.
    expect(response.body.signal.trace).toBe(`00-${traceId}-${emitSpan.spanContext().spanId}-01`);
    expect(parentOf(handlerJob)).toBe(emitSpan.spanContext().spanId);
    expect(parentOf(handler)).toBe(handlerJob.spanContext().spanId);
    expect(parentOf(executor)).toBe(directiveJob.spanContext().spanId);
    // The directive job descends from the handler job (through the proposal's emit).
    const ids = new Map(spans.map((span) => [span.spanContext().spanId, span]));
    let cursor: ReadableSpan | undefined = directiveJob;
    const chain: string[] = [];
    while (cursor) {
      chain.push(cursor.name);
      cursor = ids.get(parentOf(cursor) ?? '');
    }
    expect(chain).toContain('job handle_signal');
    expect(chain[chain.length - 1]).toBe('HTTP POST /v1/orgs/:org/signals');
  });

  it('stores the trace on derived lifecycle signals', async () => {
    const rows = await t.app.deps.sql<{ type: string; trace: string | null }[]>`
      select type, trace from org_traced.signals where type like 'directive.%' or type like 'execution.%'`;
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) expect(row.trace, row.type).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-/);
  });
});
