/**
 * The environment, parsed once. Nothing else in signalbus reads `process.env`;
 * `src/app.ts` and the CLI receive a `Config` and pass what they need inward.
 */
import { z } from 'zod';

const booleanFlag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((value) => value === 'true' || value === '1' || value === 'yes');

const httpUrl = z.url({ protocol: /^https?$/ });

export const Config = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  SIGNALBUS_DATA_DIR: z.string().min(1).default('.data'),
  HOST: z.string().min(1).default('0.0.0.0'),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  SIGNALBUS_ENCRYPTION_KEYS: z.string().min(1).optional(),
  SIGNALBUS_ALLOW_PRIVATE_TARGETS: booleanFlag.default(false),
  SIGNALBUS_STRIPE_API_BASE: httpUrl.optional(),
  SIGNALBUS_OPENAI_BASE_URL: httpUrl.optional(),
  SIGNALBUS_GOOGLE_API_BASE: httpUrl.optional(),
  SIGNALBUS_GOOGLE_OAUTH_BASE: httpUrl.optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Largest accepted signal payload, canonical JSON bytes. */
  SIGNALBUS_MAX_PAYLOAD_BYTES: z.coerce.number().int().positive().default(256 * 1024),
  /** Largest accepted request body for a batch emit. */
  SIGNALBUS_MAX_BATCH_BYTES: z.coerce.number().int().positive().default(32 * 1024 * 1024),
  /** Connections in the application pool; keep small, see ARCHITECTURE.md (Scale). */
  SIGNALBUS_DB_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  /** Connections for appends outside a caller's transaction (group commit, pipelined). */
  SIGNALBUS_DB_WRITER_POOL_SIZE: z.coerce.number().int().min(1).max(50).default(2),
  /** Seconds between SSE heartbeat comments. */
  SIGNALBUS_SSE_HEARTBEAT_SECONDS: z.coerce.number().positive().default(15),
});
export type Config = z.infer<typeof Config>;

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
