/**
 * The environment, parsed once. Nothing else in signalbus reads `process.env`;
 * `src/app.ts` and the CLI receive a `Config` and pass what they need inward.
 */
import { z } from 'zod';
import { ModelPrices } from './executors/openai/prices.ts';
import { DEFAULT_CEL_LIMITS, type CelLimits } from './policy/cel-program.ts';
import { masterKeysProblem } from './secrets/keys.ts';

const booleanFlag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((value) => value === 'true' || value === '1' || value === 'yes');

const httpUrl = z.url({ protocol: /^https?$/ });

const rate = z.coerce.number().min(0).max(1_000_000);
const burst = z.coerce.number().int().min(0).max(10_000_000);

/** JSON text holding model prices; each problem is reported under the variable's own name. */
const modelPricesJson = z.string().transform((text, ctx) => {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be JSON: {"<model>": {"input_per_1m": <usd>, "output_per_1m": <usd>}}' });
    return z.NEVER;
  }
  const parsed = ModelPrices.safeParse(value);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) {
    ctx.addIssue({ code: 'custom', message: `${issue.path.length ? `${issue.path.join('.')}: ` : ''}${issue.message}` });
  }
  return z.NEVER;
});

export const Config = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  SIGNALBUS_DATA_DIR: z.string().min(1).default('.data'),
  HOST: z.string().min(1).default('0.0.0.0'),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  /** `kid:base64key,…` (32-byte keys): the first wraps new secrets, all unwrap. */
  SIGNALBUS_ENCRYPTION_KEYS: z
    .string()
    .min(1)
    .superRefine((value, ctx) => {
      const problem = masterKeysProblem(value);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .optional(),
  SIGNALBUS_ALLOW_PRIVATE_TARGETS: booleanFlag.default(false),
  SIGNALBUS_STRIPE_API_BASE: httpUrl.optional(),
  SIGNALBUS_OPENAI_BASE_URL: httpUrl.optional(),
  /** Overrides and additions to the OpenAI price table (USD per million tokens). */
  SIGNALBUS_OPENAI_PRICES: modelPricesJson.optional(),
  SIGNALBUS_GOOGLE_API_BASE: httpUrl.optional(),
  SIGNALBUS_GOOGLE_OAUTH_BASE: httpUrl.optional(),
  /** OTLP/HTTP collector for traces; without it (and outside tests) no spans are made. */
  OTEL_EXPORTER_OTLP_ENDPOINT: httpUrl.optional(),
  /** Time a client has to send its request headers (docs/http.md). */
  SIGNALBUS_HTTP_HEADERS_TIMEOUT_MS: z.coerce.number().int().min(100).default(10_000),
  /** Time a client has to send its whole request, body included. */
  SIGNALBUS_HTTP_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(100).default(30_000),
  /** How long an idle keep-alive connection is kept open. */
  SIGNALBUS_HTTP_KEEPALIVE_TIMEOUT_MS: z.coerce.number().int().min(100).default(5_000),
  /** Connections one process holds at once (event streams included); more are refused. */
  SIGNALBUS_HTTP_MAX_CONNECTIONS: z.coerce.number().int().min(1).default(10_000),
  /** Label signal counts in /metrics by every type family, tenants' own included (see telemetry/metrics.ts). */
  SIGNALBUS_METRICS_TENANT_LABELS: booleanFlag.default(false),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Largest accepted signal payload, canonical JSON bytes. */
  SIGNALBUS_MAX_PAYLOAD_BYTES: z.coerce.number().int().positive().default(256 * 1024),
  /**
   * Largest accepted request body for a batch emit: 1,000 signals of about
   * 2 KiB each. Larger payloads go one per request (or in smaller batches).
   */
  SIGNALBUS_MAX_BATCH_BYTES: z.coerce.number().int().min(1024).default(2 * 1024 * 1024),
  /**
   * Most values (array elements, object members, containers) one request body
   * may hold, counted before it is parsed; bounds what a parse can build.
   */
  SIGNALBUS_MAX_BODY_VALUES: z.coerce.number().int().min(1000).default(250_000),
  /**
   * Byte budget of one page of signals (list, stream): a page ends early,
   * with its cursor, before the signal that would pass it; never empty.
   */
  SIGNALBUS_MAX_PAGE_BYTES: z.coerce.number().int().min(64 * 1024).default(2 * 1024 * 1024),
  /** Connections in the application pool; keep small, see ARCHITECTURE.md (Scale). */
  SIGNALBUS_DB_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  /** Connections for appends outside a caller's transaction (group commit, pipelined). */
  SIGNALBUS_DB_WRITER_POOL_SIZE: z.coerce.number().int().min(1).max(50).default(2),
  /** Seconds between SSE heartbeat comments. */
  SIGNALBUS_SSE_HEARTBEAT_SECONDS: z.coerce.number().positive().default(15),
  /** Least milliseconds between two reads of the live feeds under load (a read after a quiet spell starts at once). */
  SIGNALBUS_SSE_TICK_MS: z.coerce.number().int().min(0).max(1000).default(10),
  /** Concurrent event streams one API key may hold open on one process. */
  SIGNALBUS_SSE_MAX_STREAMS_PER_KEY: z.coerce.number().int().min(1).default(100),
  /** Concurrent event streams of one org on one process. */
  SIGNALBUS_SSE_MAX_STREAMS_PER_ORG: z.coerce.number().int().min(1).default(1000),
  /** Handler and other jobs one worker process runs at once. */
  SIGNALBUS_WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(100).default(8),
  /**
   * Provider calls one worker process makes at once, beside those jobs. More
   * executions than this are held: those reading their directives or
   * recording outcomes share transactions and need no call slot.
   */
  SIGNALBUS_EXECUTOR_CONCURRENCY: z.coerce.number().int().min(1).max(500).default(64),
  /** Seconds between worker heartbeats (and sweeps for dead workers). */
  SIGNALBUS_WORKER_HEARTBEAT_SECONDS: z.coerce.number().positive().default(5),
  /** A worker silent this long is presumed dead and its jobs are released. */
  SIGNALBUS_WORKER_STALE_SECONDS: z.coerce.number().positive().default(30),
  /** Longest causation chain handlers may extend (the loop guard). */
  SIGNALBUS_MAX_CAUSATION_DEPTH: z.coerce.number().int().min(1).max(1000).default(16),
  /** How long a directive may await approval when its rule names no TTL (72 h). */
  SIGNALBUS_APPROVAL_TTL_SECONDS: z.coerce.number().int().min(60).default(72 * 3600),
  /** Signals a replay folds per page, and per checkpoint. */
  SIGNALBUS_REPLAY_PAGE_SIZE: z.coerce.number().int().min(1).max(100_000).default(2000),
  /** Signal lines `orgs import` writes per transaction (a page also ends at 4 MiB of lines). */
  SIGNALBUS_IMPORT_PAGE_SIZE: z.coerce.number().int().min(1).max(100_000).default(1000),
  /** A pause between the pages of `orgs import`, to throttle a large import on a busy server. */
  SIGNALBUS_IMPORT_PAGE_DELAY_MS: z.coerce.number().int().min(0).max(60_000).default(0),
  /** First retry delay of executor runs, doubled per attempt with jitter. */
  SIGNALBUS_EXECUTOR_RETRY_BASE_MS: z.coerce.number().int().min(1).default(2000),
  /** The package registry folder; absent = the one shipped with signalbus (`packages-registry`). */
  SIGNALBUS_REGISTRY_DIR: z.string().min(1).optional(),
  /** Longest CEL expression accepted (policies, conditions, package rules), in characters. */
  SIGNALBUS_CEL_MAX_LENGTH: z.coerce.number().int().min(64).max(100_000).default(DEFAULT_CEL_LIMITS.maxLength),
  /** Deepest CEL nesting accepted; the parser's own stack bound (250) stays above it. */
  SIGNALBUS_CEL_MAX_DEPTH: z.coerce.number().int().min(4).max(200).default(DEFAULT_CEL_LIMITS.maxDepth),
  /** Steps one CEL budget allows (one decision, one condition); also the cap on an expression's estimated cost. */
  SIGNALBUS_CEL_MAX_COST: z.coerce.number().int().min(1000).max(1_000_000_000).default(DEFAULT_CEL_LIMITS.maxCost),
  /** Wall-clock milliseconds one CEL budget allows: how long one evaluation may hold the event loop. */
  SIGNALBUS_CEL_TIMEOUT_MS: z.coerce.number().int().min(1).max(10_000).default(DEFAULT_CEL_LIMITS.timeoutMs),
  /**
   * Request limits (token buckets; docs/rate-limits.md): a rate per second
   * and a burst each, 0 in either turns that limit off. Per API key and per
   * org, shared by every server process; per source address, in each
   * process, for requests whose key must be looked up in the database.
   */
  SIGNALBUS_RATE_LIMIT_KEY_PER_S: rate.default(100),
  SIGNALBUS_RATE_LIMIT_KEY_BURST: burst.default(200),
  SIGNALBUS_RATE_LIMIT_ORG_PER_S: rate.default(500),
  SIGNALBUS_RATE_LIMIT_ORG_BURST: burst.default(1000),
  SIGNALBUS_RATE_LIMIT_UNKNOWN_KEY_PER_S: rate.default(1),
  SIGNALBUS_RATE_LIMIT_UNKNOWN_KEY_BURST: burst.default(20),
  /** Deliveries per second to one installation's inbound hook (`/v1/hooks/:id`), across processes. */
  SIGNALBUS_RATE_LIMIT_HOOK_PER_S: rate.default(100),
  SIGNALBUS_RATE_LIMIT_HOOK_BURST: burst.default(500),
  /** Largest inbound webhook body, in bytes (Stripe's events stay well under). */
  SIGNALBUS_HOOK_MAX_BODY_BYTES: z.coerce.number().int().min(1024).max(16 * 1024 * 1024).default(512 * 1024),
  /**
   * How long a hook takes an installed installation as such before reading it
   * again: disabling or uninstalling closes its hook within this (0: at once,
   * one read per delivery).
   */
  SIGNALBUS_HOOK_CACHE_MS: z.coerce.number().int().min(0).max(60_000).default(1000),
  /** Deliveries kept in each installation's delivery log (the newest; older ones are trimmed). */
  SIGNALBUS_HOOK_DELIVERY_LOG_SIZE: z.coerce.number().int().min(10).max(1_000_000).default(1000),
  /**
   * Where Google's OIDC signing keys are read for Pub/Sub push tokens
   * (`{kid: PEM}`); Google's own when unset. Tests serve theirs on loopback.
   */
  SIGNALBUS_GOOGLE_OIDC_CERTS_URL: httpUrl.optional(),
  /**
   * A header that a trusted proxy in front sets to the client's address
   * (`fly-client-ip`, `x-real-ip`); unset, the address is the socket's peer.
   */
  /**
   * The URL senders reach this service at (`https://bus.example.com`, or with
   * a path prefix), for the hook URLs shown and Pub/Sub's default audience;
   * unset, each request's own origin, which is wrong behind a proxy that
   * rewrites the host or terminates TLS.
   */
  SIGNALBUS_PUBLIC_URL: httpUrl
    .refine((value) => !/[?#]/.test(value), 'must have no query or fragment')
    .transform((value) => value.replace(/\/+$/, ''))
    .optional(),
  SIGNALBUS_CLIENT_ADDRESS_HEADER: z
    .string()
    .regex(/^[a-z0-9-]{1,64}$/i, 'must be a header name')
    .transform((name) => name.toLowerCase())
    .optional(),
});
export type Config = z.infer<typeof Config>;

/** The CEL limits a config sets. */
export function celLimitsOf(config: Config): CelLimits {
  return {
    maxLength: config.SIGNALBUS_CEL_MAX_LENGTH,
    maxDepth: config.SIGNALBUS_CEL_MAX_DEPTH,
    maxCost: config.SIGNALBUS_CEL_MAX_COST,
    timeoutMs: config.SIGNALBUS_CEL_TIMEOUT_MS,
  };
}

export class ConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid configuration:\n${issues.map((line) => `  ${line}`).join('\n')}`);
  }
}

/** Parses an environment; throws a `ConfigError` naming each bad variable. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const present = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value !== ''),
  );
  const result = Config.safeParse(present);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`),
    );
  }
  return result.data;
}
