/**
 * telemetry — logs, traces and metrics. Secrets are kept out of logged objects
 * by construction; redaction is only a second net. Traces cross the database
 * through the W3C traceparent stored on signals and carried in job payloads.
 */
export { createLogger } from './logger.ts';
export { createMetrics, oldestJobAgeQuery, type Metrics, type MetricsOptions } from './metrics.ts';
export { createTracing, currentTraceparent, inSpan, traceRequests, type Tracing } from './tracing.ts';
