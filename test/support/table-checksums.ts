/**
 * A checksum of every table a write could touch — each tenant schema's, the
 * public schema's and graphile-worker's job queue — to prove that something
 * left the database exactly as it found it.
 */
import type { Sql } from '../../src/db/client.ts';

export async function tableChecksums(sql: Sql, schemas: readonly string[]): Promise<Record<string, string>> {
  const tables = await sql<{ name: string }[]>`
    select format('%I.%I', table_schema, table_name) as name from information_schema.tables
     where table_type = 'BASE TABLE'
       and (table_schema = any(${[...schemas, 'public']}::text[]) or (table_schema = 'graphile_worker' and table_name like '\\_private\\_%'))
     order by 1`;
  const result: Record<string, string> = {};
  for (const { name } of tables) {
    const [row] = await sql<{ sum: string }[]>`
      select count(*) || ':' || md5(coalesce(string_agg(t::text, E'\\n' order by t::text), '')) as sum from ${sql.unsafe(name)} t`;
    result[name] = row!.sum;
  }
  return result;
}
