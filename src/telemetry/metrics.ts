/**
 * Prometheus metrics, served at `GET /metrics`. Each app owns its registry
 * (never prom-client's global one), so several apps in one process don't
 * collide. Label values that come from data are bounded: a tenant inventing
 * types must not be able to grow the series count without limit.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Sql } from '../db/client.ts';

export interface Metrics {
  registry: Registry;
  signalsEmitted(type: string, count?: number): void;
  dedupeHits(count?: number): void;
  /** Seconds from enqueue (run_at) to start. */
  jobLatency(task: string, seconds: number): void;
  directiveDecision(effect: string): void;
  executionFailed(handler: string, final: boolean): void;
  /** An inbound webhook delivery: accepted, deduplicated, ignored or rejected, and why. */
  webhookDelivery(outcome: string, reason: string | null): void;
  render(): Promise<string>;
  contentType: string;
}

export interface MetricsOptions {
  /** Age of the oldest runnable job, read at scrape time; null when there is none. */
  collectOldestJobAgeSeconds?: () => Promise<number | null>;
  /**
   * Label signal counts with every type family. Off by default: families
   * other than `systemFamilies` are chosen by tenants, and a scrape would
   * show one tenant's vocabulary to whoever reads it; they count as `other`.
   */
  tenantLabels?: boolean;
  /** Families the platform itself emits (`directive`, `execution`, …), labelled by name. */
  systemFamilies?: readonly string[];
  /** Process metrics (CPU, memory, event loop); off by default to keep test scrapes small. */
  collectDefaults?: boolean;
}

const OTHER = 'other';
// Type families are lowercase names; handler and task names are code-defined ids.
const FAMILY = /^[a-z][a-z0-9_-]{0,63}$/;
const NAME = /^[\w:./@-]{1,128}$/;
// A scrape must answer even when the database is slow.
const COLLECT_TIMEOUT_MS = 2_000;

/**
 * Keeps the first `cap` distinct well-formed values and folds the rest (and
 * anything malformed) into `other`.
 */
function boundedLabel(cap: number, pattern: RegExp): (value: string) => string {
  const seen = new Set<string>();
  return (value) => {
    if (!pattern.test(value)) return OTHER;
    if (seen.has(value)) return value;
    if (seen.size >= cap) return OTHER;
    seen.add(value);
    return value;
  };
}

/** The first dotted segment: `stripe` for `stripe.charge.refunded`. */
function familyOf(type: string): string {
  const dot = type.indexOf('.');
  return dot === -1 ? type : type.slice(0, dot);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  if (options.collectDefaults) collectDefaultMetrics({ register: registry, prefix: 'signalbus_' });

  const anyFamily = boundedLabel(200, FAMILY);
  const systemFamilies = new Set(options.systemFamilies ?? []);
  const family = (value: string) => (options.tenantLabels || systemFamilies.has(value) ? anyFamily(value) : OTHER);
  const task = boundedLabel(100, NAME);
  const effect = boundedLabel(20, NAME);
  const handler = boundedLabel(500, NAME);

  const emitted = new Counter({
    name: 'signalbus_signals_emitted_total',
    help: 'Signals appended to the log, by type family (first dotted segment).',
    labelNames: ['family'] as const,
    registers,
  });
  const deduplicated = new Counter({
    name: 'signalbus_signals_deduplicated_total',
    help: 'Emits answered with an existing signal because of an idempotency key.',
    registers,
  });
  const latency = new Histogram({
    name: 'signalbus_job_latency_seconds',
    help: 'Seconds from a job becoming runnable to a worker starting it.',
    labelNames: ['task'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers,
  });
  const decisions = new Counter({
    name: 'signalbus_directive_decisions_total',
    help: 'Policy decisions on directives, by effect.',
    labelNames: ['effect'] as const,
    registers,
  });
  const failures = new Counter({
    name: 'signalbus_execution_failures_total',
    help: 'Failed handler executions; final="true" when no retry remains.',
    labelNames: ['handler', 'final'] as const,
    registers,
  });
  const deliveries = new Counter({
    name: 'signalbus_webhook_deliveries_total',
    help: 'Inbound webhook deliveries, by outcome and reason (a problem code, or none).',
    labelNames: ['outcome', 'reason'] as const,
    registers,
  });
  const collectAge = options.collectOldestJobAgeSeconds;
  new Gauge({
    name: 'signalbus_oldest_unprocessed_job_age_seconds',
    help: 'Age of the oldest runnable job not yet picked up; 0 when none, NaN when it could not be read.',
    registers,
    async collect() {
      if (!collectAge) return this.set(0);
      try {
        this.set((await withTimeout(collectAge(), COLLECT_TIMEOUT_MS)) ?? 0);
      } catch {
        // A failing collector must not fail the scrape, nor leave a stale value.
        this.set(Number.NaN);
      }
    },
  });

  return {
    registry,
    contentType: registry.contentType,
    signalsEmitted(type, count = 1) {
      emitted.inc({ family: family(familyOf(type)) }, count);
    },
    dedupeHits(count = 1) {
      deduplicated.inc(count);
    },
    jobLatency(name, seconds) {
      latency.observe({ task: task(name) }, Math.max(0, seconds));
    },
    directiveDecision(value) {
      decisions.inc({ effect: effect(value) });
    },
    executionFailed(name, final) {
      failures.inc({ handler: handler(name), final: String(final) });
    },
    webhookDelivery(outcome, reason) {
      deliveries.inc({ outcome: effect(outcome), reason: reason === null ? 'none' : effect(reason) });
    },
    render: () => registry.metrics(),
  };
}

/** Age in seconds of the oldest job that is due, unlocked and has attempts left; null when none. */
export async function oldestJobAgeQuery(sql: Sql): Promise<number | null> {
  const [row] = await sql<{ age: number | null }[]>`
    select extract(epoch from now() - min(run_at))::float8 as age
    from graphile_worker.jobs
    where locked_at is null and run_at <= now() and attempts < max_attempts`;
  return row?.age ?? null;
}
