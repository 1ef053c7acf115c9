/**
 * The public schema: identity tables (organizations, API keys) and tenant
 * migration status. These are not projections (ARCHITECTURE.md, exceptions).
 * `npm run db:generate` turns changes here into SQL under `drizzle/`.
 */
import { sql } from 'drizzle-orm';
import { index, integer, jsonb, pgTable, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';

export const organizations = pgTable('organizations', {
  id: text('id').primaryKey(),
  slug: text('slug').notNull().unique(),
  name: text('name').notNull(),
  schemaName: text('schema_name').notNull().unique(),
  /** `importing`: an import is writing it; no route, stream or handler sees it until it goes live. */
  status: text('status', { enum: ['active', 'suspended', 'importing'] }).notNull().default('active'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

export const apiKeys = pgTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    /** Null for platform keys (support, platform_admin). */
    orgId: text('org_id').references(() => organizations.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    role: text('role', { enum: ['viewer', 'operator', 'admin', 'support', 'platform_admin'] }).notNull(),
    actor: jsonb('actor').notNull(),
    /** sha256 of the secret; the secret itself is never stored. */
    secretHash: text('secret_hash').notNull(),
    /** First characters of the secret, to tell keys apart in listings. */
    secretPrefix: text('secret_prefix').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
  },
  (table) => [
    uniqueIndex('api_keys_secret_hash').on(table.secretHash),
    index('api_keys_org').on(table.orgId),
  ],
);

/** One row per tenant schema: how far its `tenants/` migrations got, and the last failure. */
export const tenantMigrations = pgTable(
  'tenant_migrations',
  {
    orgId: text('org_id')
      .primaryKey()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    schemaName: text('schema_name').notNull(),
    version: integer('version').notNull().default(0),
    appliedAt: timestamp('applied_at', { withTimezone: true }),
    error: text('error'),
    errorVersion: integer('error_version'),
    errorAt: timestamp('error_at', { withTimezone: true }),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().default(sql`now()`),
  },
  (table) => [index('tenant_migrations_version').on(table.version)],
);

/**
 * Liveness of graphile-worker workers: each worker process refreshes its
 * workers' rows; a sweeper unlocks the jobs of workers whose rows went stale
 * (a SIGKILLed worker would otherwise hold its jobs locked for hours).
 */
export const workerHeartbeats = pgTable('worker_heartbeats', {
  workerId: text('worker_id').primaryKey(),
  process: text('process').notNull(),
  lastSeen: timestamp('last_seen', { withTimezone: true }).notNull(),
});

/**
 * Which org an installation belongs to, by installation id alone: the inbound
 * hook route (`/v1/hooks/:installation_id`, no API key) finds its tenant here.
 * Written in the transaction that records `installation.requested`; a route
 * names no secret and is never deleted (an uninstalled installation's hook
 * answers 404 from its status). Not a projection: rebuilt from each tenant's
 * installations after an import (`recordInstallationRoutes`).
 */
export const installationRoutes = pgTable(
  'installation_routes',
  {
    installationId: text('installation_id').primaryKey(),
    orgId: text('org_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
  },
  (table) => [index('installation_routes_org').on(table.orgId)],
);

/**
 * Console sign-ins: an API key exchanged for a session. The browser holds only
 * the session token; the table keeps its sha256, the key it stands for and a
 * CSRF token. Expiry is enforced here, and a revoked key ends its sessions
 * (the lookup joins the key). Not a projection: identity, like `api_keys`.
 */
export const consoleSessions = pgTable(
  'console_sessions',
  {
    tokenHash: text('token_hash').primaryKey(),
    keyId: text('key_id')
      .notNull()
      .references(() => apiKeys.id, { onDelete: 'cascade' }),
    csrfToken: text('csrf_token').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
  },
  (table) => [index('console_sessions_expires').on(table.expiresAt)],
);

/**
 * An unfinished org import: which file (its sha256) is being written into
 * the org, and how many of its signal lines are in. Each page of the import
 * commits its signals, their folds and this count together, so a re-run of
 * the same file resumes after `written`. The row goes in the transaction
 * that makes the org live. Not a projection: bookkeeping of a CLI command.
 */
export const orgImports = pgTable('org_imports', {
  orgId: text('org_id')
    .primaryKey()
    .references(() => organizations.id, { onDelete: 'cascade' }),
  sha256: text('sha256').notNull(),
  signals: integer('signals').notNull(),
  written: integer('written').notNull().default(0),
  startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});
