/**
 * Tracing: one trace from the request through emit, the job, the handler and
 * the directive's execution. The hop through the database is bridged by the
 * W3C `traceparent` stored on each signal and carried in job payloads:
 * `currentTraceparent()` writes it, `inSpan({ traceparent })` resumes from it.
 *
 * The provider is not registered globally: each app holds its own tracer, so
 * several apps (and exporters) can share a test process.
 */
import {
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { BasicTracerProvider, BatchSpanProcessor, SimpleSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';

export interface Tracing {
  tracer: Tracer;
  shutdown(): Promise<void>;
}

// Used directly rather than through the global API, so parsing and formatting
// traceparents does not depend on whoever registered globals first.
const propagator = new W3CTraceContextPropagator();
let globalsRegistered = false;

/**
 * The context manager and propagator are process-wide; registering them once
 * is what lets spans parent across awaits. A second registration would fail
 * (the API refuses to overwrite), so it is skipped.
 */
function registerGlobals(): void {
  if (globalsRegistered) return;
  globalsRegistered = true;
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(propagator);
}

export function createTracing(options: { serviceName: string; exporter?: SpanExporter; otlpEndpoint?: string }): Tracing {
  registerGlobals();
  // Without an exporter spans are still recorded (no processor drops them), so
  // their ids reach stored traceparents and downstream spans join the trace.
  // An OTLP collector gets batches, off the request path.
  const spanProcessors = [
    ...(options.exporter ? [new SimpleSpanProcessor(options.exporter)] : []),
    ...(options.otlpEndpoint
      ? [new BatchSpanProcessor(new OTLPTraceExporter({ url: `${options.otlpEndpoint.replace(/\/$/, '')}/v1/traces` }))]
      : []),
  ];
  const provider = new BasicTracerProvider({ spanProcessors });
  return {
    tracer: provider.getTracer(options.serviceName),
    shutdown: () => provider.shutdown(),
  };
}

/** The parent for a new span: the remote span named by a valid traceparent, else the active context. */
function parentContext(traceparent: string | null | undefined): Context {
  const active = context.active();
  if (!traceparent) return active;
  // An invalid header leaves the context unchanged, which is the fallback we want.
  return propagator.extract(active, { traceparent }, defaultTextMapGetter);
}

/**
 * Runs `fn` in a new active span, a child of `traceparent` when that is a
 * valid W3C traceparent, else of the active span. A throw marks the span ERROR
 * and is rethrown; the span always ends.
 */
export async function inSpan<T>(
  tracer: Tracer,
  name: string,
  options: { attributes?: Attributes; traceparent?: string | null; kind?: SpanKind },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = parentContext(options.traceparent);
  const span = tracer.startSpan(
    name,
    { kind: options.kind ?? SpanKind.INTERNAL, ...(options.attributes ? { attributes: options.attributes } : {}) },
    parent,
  );
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (error) {
    span.recordException(error instanceof Error ? error : String(error));
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    throw error;
  } finally {
    span.end();
  }
}

/** The W3C traceparent of the active span, or null when there is none. */
export function currentTraceparent(): string | null {
  const carrier: Record<string, string> = {};
  // The propagator writes nothing for a missing or invalid span context.
  propagator.inject(context.active(), carrier, defaultTextMapSetter);
  return carrier.traceparent ?? null;
}

/**
 * One SERVER span per request, a child of the caller's `traceparent` header
 * when valid. Named by route pattern, not path, to keep span names bounded.
 */
export function traceRequests(tracer: Tracer): MiddlewareHandler {
  return async (c, next) => {
    // Matching is done before middleware runs, so the route is known here.
    const route = routePath(c, -1) || '*';
    const method = c.req.method;
    const parent = parentContext(c.req.header('traceparent'));
    const span = tracer.startSpan(
      `HTTP ${method} ${route}`,
      { kind: SpanKind.SERVER, attributes: { 'http.method': method, 'http.route': route } },
      parent,
    );
    try {
      await context.with(trace.setSpan(parent, span), () => next());
      // hono turns handler errors into responses (onError), so status is the outcome.
      const status = c.res.status;
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    } catch (error) {
      span.recordException(error instanceof Error ? error : String(error));
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
      throw error;
    } finally {
      span.end();
    }
  };
}
