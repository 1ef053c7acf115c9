/**
 * db — connections, transactions, the public schema (drizzle) and the
 * embedded PostgreSQL. Tenant tables are always addressed schema-qualified;
 * `search_path` is only ever set with SET LOCAL inside a migration's
 * transaction. Domain modules receive a pool or a `tx` from their caller.
 */
export { createSql, type Sql, type Queryable } from './client.ts';
export { withTransaction, quoteIdent, type Tx } from './transaction.ts';
export { migratePublicSchema, PUBLIC_MIGRATIONS_DIR, TENANT_MIGRATIONS_DIR } from './migrate.ts';
export { ensureEmbeddedDatabase, type EmbeddedDatabase } from './embedded.ts';
