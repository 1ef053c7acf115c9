import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { Hono } from 'hono';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createTracing, currentTraceparent, inSpan, traceRequests } from './tracing.ts';

const exporter = new InMemorySpanExporter();
const tracing = createTracing({ serviceName: 'signalbus-test', exporter });
const { tracer } = tracing;

const REMOTE_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const REMOTE_SPAN = '00f067aa0ba902b7';
const REMOTE = `00-${REMOTE_TRACE}-${REMOTE_SPAN}-01`;

const finished = (name: string) => {
  const span = exporter.getFinishedSpans().find((candidate) => candidate.name === name);
  if (!span) throw new Error(`no finished span ${name}`);
  return span;
};

beforeEach(() => exporter.reset());
afterAll(() => tracing.shutdown());

describe('inSpan', () => {
  it('continues the trace named by a traceparent, as a child of its span', async () => {
    await inSpan(tracer, 'job', { traceparent: REMOTE, kind: SpanKind.CONSUMER, attributes: { task: 'handle' } }, async () => {});
    const span = finished('job');
    expect(span.spanContext().traceId).toBe(REMOTE_TRACE);
    expect(span.parentSpanContext?.spanId).toBe(REMOTE_SPAN);
    expect(span.kind).toBe(SpanKind.CONSUMER);
    expect(span.attributes.task).toBe('handle');
  });

  it('parents a nested span to the outer one across awaits', async () => {
    await inSpan(tracer, 'outer', {}, async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      await inSpan(tracer, 'inner', {}, async () => {
        await Promise.resolve();
      });
    });
    const outer = finished('outer');
    const inner = finished('inner');
    expect(outer.parentSpanContext).toBeUndefined();
    expect(inner.spanContext().traceId).toBe(outer.spanContext().traceId);
    expect(inner.parentSpanContext?.spanId).toBe(outer.spanContext().spanId);
  });

  it('falls back to the active span when the traceparent is malformed', async () => {
    await inSpan(tracer, 'outer', {}, () => inSpan(tracer, 'inner', { traceparent: 'not-a-traceparent' }, async () => {}));
    expect(finished('inner').parentSpanContext?.spanId).toBe(finished('outer').spanContext().spanId);
  });

  it('round-trips currentTraceparent: a stored traceparent resumes the same trace', async () => {
    expect(currentTraceparent()).toBeNull();
    const stored = await inSpan(tracer, 'emit', {}, async () => currentTraceparent());
    const emit = finished('emit');
    expect(stored).toBe(`00-${emit.spanContext().traceId}-${emit.spanContext().spanId}-01`);
    await inSpan(tracer, 'handler', { traceparent: stored }, async () => {
      expect(currentTraceparent()).toMatch(new RegExp(`^00-${emit.spanContext().traceId}-[0-9a-f]{16}-01$`));
    });
    expect(finished('handler').parentSpanContext?.spanId).toBe(emit.spanContext().spanId);
  });

  it('marks the span ERROR, records the exception, rethrows and still ends the span', async () => {
    await expect(
      inSpan(tracer, 'failing', {}, async () => {
        throw new Error('provider refused');
      }),
    ).rejects.toThrow('provider refused');
    const span = finished('failing');
    expect(span.status).toMatchObject({ code: SpanStatusCode.ERROR, message: 'provider refused' });
    expect(span.events.map((event) => event.name)).toContain('exception');
    expect(span.ended).toBe(true);
  });

  it('creates spans without an exporter, so traceparents still propagate', async () => {
    const silent = createTracing({ serviceName: 'silent' });
    const stored = await inSpan(silent.tracer, 'emit', {}, async () => currentTraceparent());
    expect(stored).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(exporter.getFinishedSpans()).toHaveLength(0);
    await silent.shutdown();
  });
});

describe('traceRequests', () => {
  const app = new Hono();
  app.use('*', traceRequests(tracer));
  app.get('/things/:id', async (c) => c.json({ traceparent: currentTraceparent() }));
  app.get('/broken', () => {
    throw new Error('boom');
  });

  it('opens a SERVER span named by route, child of the incoming traceparent, active in the handler', async () => {
    const response = await app.request('/things/42', { headers: { traceparent: REMOTE } });
    const body = (await response.json()) as { traceparent: string };
    const span = finished('HTTP GET /things/:id');
    expect(span.kind).toBe(SpanKind.SERVER);
    expect(span.spanContext().traceId).toBe(REMOTE_TRACE);
    expect(span.parentSpanContext?.spanId).toBe(REMOTE_SPAN);
    expect(span.attributes).toMatchObject({ 'http.method': 'GET', 'http.route': '/things/:id', 'http.response.status_code': 200 });
    expect(body.traceparent).toBe(`00-${REMOTE_TRACE}-${span.spanContext().spanId}-01`);
  });

  it('marks 5xx responses ERROR', async () => {
    expect((await app.request('/broken')).status).toBe(500);
    const span = finished('HTTP GET /broken');
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.attributes['http.response.status_code']).toBe(500);
  });
});
