/**
 * Exporting an org: its log as NDJSON (org-file.ts), read in one
 * repeatable-read snapshot so the header's positions and secret names agree
 * with the lines, below the visibility horizon so the export is a prefix of
 * the log in position order. PostgreSQL renders each line (payloads keep
 * their exact numbers; timestamps keep microseconds) and a cursor hands them
 * over a page at a time, so memory stays flat however long the log.
 */
import type { Sql } from '../db/client.ts';
import type { VerbCall } from '../signals/verb-context.ts';
import { EXPORT_FORMAT, EXPORT_VERSION, lineHasher, type ExportHeader, type ExportTrailer } from './org-file.ts';
import { findTenant } from './directory.ts';
import { notFound } from '../core/errors.ts';

const POSITION = `lpad(to_hex((tx_id::text)::bigint), 16, '0') || lpad(to_hex(seq), 16, '0')`;
const MICROS = (column: string) => `to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** Every stored column but the position's halves, which the target database assigns anew. */
const LINE = `jsonb_build_object(
  'id', id, 'position', ${POSITION}, 'type', type, 'schema_version', schema_version, 'subject', subject,
  'payload', payload, 'actor', actor, 'source', source, 'dedupe_key', dedupe_key, 'payload_hash', payload_hash,
  'request_hash', request_hash, 'correlation_id', correlation_id, 'causation_id', causation_id,
  'causation_depth', causation_depth, 'installation_id', installation_id, 'trace', trace,
  'occurred_at', ${MICROS('occurred_at')}, 'recorded_at', ${MICROS('recorded_at')})::text`;

export interface ExportInput {
  /** Receives the file a chunk of whole lines at a time; a returned promise is awaited (backpressure). */
  write(chunk: string): Promise<void> | void;
  pageSize?: number;
}

export interface ExportSummary {
  header: ExportHeader;
  trailer: ExportTrailer;
}

export async function exportOrg(deps: { sql: Sql }, { ctx, input }: VerbCall<ExportInput>): Promise<ExportSummary> {
  const { tenant } = ctx;
  const pageSize = input.pageSize ?? 1000;
  const summary = await deps.sql.begin('isolation level repeatable read read only', async (sql) => {
    const org = await findTenant(sql, 'id', tenant.id);
    if (!org) throw notFound('organization');
    const table = sql(`${tenant.schema}.signals`);
    const [facts] = await sql<{ database: string; system_identifier: string | null; server_version: string; schema_version: number; first: string | null; last: string | null }[]>`
      select current_database() as database,
             (select system_identifier::text from pg_control_system()) as system_identifier,
             current_setting('server_version') as server_version,
             (select version from public.tenant_migrations where org_id = ${tenant.id}) as schema_version,
             (select ${sql.unsafe(POSITION)} from ${table} where tx_id < pg_snapshot_xmin(pg_current_snapshot()) order by tx_id, seq limit 1) as first,
             (select ${sql.unsafe(POSITION)} from ${table} where tx_id < pg_snapshot_xmin(pg_current_snapshot()) order by tx_id desc, seq desc limit 1) as last`;
    const secrets = await sql<{ owner: string; name: string }[]>`
      select owner, name from ${sql(`${tenant.schema}.secrets`)} order by owner, name`;
    const header: ExportHeader = {
      format: EXPORT_FORMAT,
      version: EXPORT_VERSION,
      org: { id: org.id, slug: org.slug, name: org.name, status: org.status, created_at: org.createdAt.toISOString() },
      source: { database: facts!.database, system_identifier: facts!.system_identifier, server_version: facts!.server_version },
      schema_version: facts!.schema_version,
      positions: { first: facts!.first, last: facts!.last },
      secrets: secrets.map(({ owner, name }) => ({ owner, name })),
      exported_at: new Date().toISOString(),
    };
    const hash = lineHasher();
    const headerLine = JSON.stringify(header);
    hash.add(headerLine);
    await input.write(`${headerLine}\n`);
    let count = 0;
    const cursor = sql<{ line: string }[]>`
      select ${sql.unsafe(LINE)} as line from ${table}
       where tx_id < pg_snapshot_xmin(pg_current_snapshot())
       order by tx_id, seq`.cursor(pageSize);
    for await (const rows of cursor) {
      let chunk = '';
      for (const { line } of rows) {
        hash.add(line);
        chunk += `${line}\n`;
      }
      count += rows.length;
      await input.write(chunk);
    }
    const trailer: ExportTrailer = { format: `${EXPORT_FORMAT}.end`, count, sha256: hash.hex() };
    await input.write(`${JSON.stringify(trailer)}\n`);
    return { header, trailer };
  });
  return summary as ExportSummary;
}
