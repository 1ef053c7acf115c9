/**
 * A signal written straight into an org's log at a chosen transaction id, for
 * tests of position order that need ids the server would not hand out now
 * (9 and 10: as text, '9' sorts after '10'). Returns its position.
 */
import type { Sql } from '../../src/db/client.ts';
import { newId } from '../../src/core/ids.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { encodeCursor } from '../../src/signals/model.ts';

export async function writeSignalAt(sql: Sql, tenant: Tenant, txId: string, { type, subject }: { type: string; subject: string }): Promise<{ txId: string; seq: string; position: string }> {
  const id = newId('signal');
  const [row] = await sql<{ seq: string }[]>`
    insert into ${sql(`${tenant.schema}.signals`)} (tx_id, id, type, subject, payload, actor, source, dedupe_key, payload_hash, occurred_at)
    values (${txId}::xid8, ${id}, ${type}, ${subject}, ${sql.json({})}, ${sql.json({ type: 'system', id: 'signalbus' })}, 'system', ${`at:${id}`}, 'hash', now())
    returning seq::text as seq`;
  return { txId, seq: row!.seq, position: encodeCursor({ txId, seq: row!.seq }) };
}
