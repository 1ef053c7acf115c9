/**
 * The append itself: one INSERT for any number of prepared signals, each
 * resolved to its stored row. Dedupe is the unique index on `dedupe_key`
 * (`ON CONFLICT DO NOTHING`), never read-then-write: concurrent appends of one
 * key wait on the index and all but one find the stored row.
 */
import type { Queryable } from '../db/client.ts';
import type { Tenant } from '../core/tenant.ts';
import { isoTimestamp, positionHalf, SIGNAL_COLUMNS, type SignalRow } from './model.ts';
import type { Prepared } from './prepare.ts';

/** One item's outcome: its stored row, and whether this append created it. */
export interface Outcome {
  row: SignalRow;
  created: boolean;
}

/** What the database decides for an appended signal; the rest is already known. */
interface Appended {
  /** The writing transaction's xid8 and the row's sequence, decimal: the position, encoded here rather than per row in SQL. */
  tx_id: string;
  seq: string;
  id: string;
  /** Returned only when a cause is named; otherwise known beforehand (the item's own, or its id; depth 0). */
  correlation_id?: string;
  causation_depth?: number;
  recorded_at: string;
}

/** One statement's rows share a transaction: its half of the position is encoded once. */
function positionEncoder(): (appended: Appended) => string {
  let txId = '';
  let txHex = '';
  return ({ tx_id, seq }) => {
    if (tx_id !== txId) {
      txId = tx_id;
      txHex = positionHalf(tx_id);
    }
    return txHex + positionHalf(seq);
  };
}

const COLUMNS = `id, type, schema_version, subject, payload, dedupe_key, payload_hash, request_hash, correlation_id,
  causation_id, causation_depth, occurred_at, actor, source, installation_id, trace, recorded_at`;
const FACT_FIELDS =
  'id, type, schema_version, subject, payload, dedupe_key, payload_hash, request_hash, correlation_id, causation_id, occurred_at';
const ORIGIN_FIELDS = 'actor, source, installation_id, trace';

const sameOrigin = (a: Prepared, b: Prepared) =>
  a.actorJson === b.actorJson && a.source === b.source && a.installationId === b.installationId && a.traceparent === b.traceparent;

/**
 * Inserts `items` (distinct dedupe keys) in one statement; rows whose key is
 * already stored are skipped. One signal is a VALUES row, several one
 * `unnest` over column arrays — with who-and-where as plain parameters when
 * all items share them, as they do unless group commit merged several calls.
 * Correlation is inherited from the causing signal when none is named —
 * looked up only when a cause is named, through a lateral index probe (a
 * plain join may be planned as a scan of the log). RETURNING carries only
 * what the database decides: the payload just sent is not read back. The
 * rows of one statement are recorded at its instant, formatted once.
 */
async function insertSignals(db: Queryable, tenant: Tenant, items: Prepared[]): Promise<Appended[]> {
  const table = db(`${tenant.schema}.signals`);
  const first = items[0]!;
  const one = items.length === 1;
  const shared = one || items.every((item) => sameOrigin(item, first));
  const column = <T>(pick: (item: Prepared) => T) => items.map(pick);
  const texts = (values: Array<string | null>) => db`json_array_elements_text(${JSON.stringify(values)}::text::json)`;
  const source = one
    ? db`(values (${first.id}, ${first.type}, ${first.schemaVersion}::int, ${first.subject}::text, ${first.payloadJson},
                  ${first.dedupeKey}, ${first.payloadHash}, ${first.requestHash}, ${first.correlationId}::text, ${first.causationId}::text,
                  ${first.occurredAt}::timestamptz)) as i(${db.unsafe(FACT_FIELDS)})`
    : // ROWS FROM zips the columns. Each travels as one JSON array, which
      // Node writes natively; a text[] would have postgres.js escape every
      // element in JavaScript. Payloads are the canonical texts already in hand.
      db`rows from (
           ${texts(column((item) => item.id))}, ${texts(column((item) => item.type))},
           unnest(${column((item) => item.schemaVersion)}::int[]), ${texts(column((item) => item.subject))},
           jsonb_array_elements(${`[${column((item) => item.payloadJson).join(',')}]`}::text::jsonb),
           ${texts(column((item) => item.dedupeKey))}, ${texts(column((item) => item.payloadHash))},
           ${texts(column((item) => item.requestHash))},
           ${texts(column((item) => item.correlationId))}, ${texts(column((item) => item.causationId))},
           ${texts(column((item) => item.occurredAt))}
           ${
             shared
               ? db``
               : db`, ${texts(column((item) => item.actorJson))}, ${texts(column((item) => item.source))},
                    ${texts(column((item) => item.installationId))}, ${texts(column((item) => item.traceparent))}`
           }
         ) with ordinality as i(${db.unsafe(FACT_FIELDS)}, ${shared ? db`` : db`${db.unsafe(ORIGIN_FIELDS)},`} ord)`;
  // `::text` first: a parameter the server types as jsonb would be JSON-encoded again by postgres.js.
  const origin = shared
    ? db`${first.actorJson}::text::jsonb, ${first.source}::text, ${first.installationId}::text, ${first.traceparent}::text`
    : db`i.actor::jsonb, i.source, i.installation_id, i.trace`;
  const caused = items.some((item) => item.causationId !== null);
  return db<Appended[]>`
    insert into ${table} (${db.unsafe(COLUMNS)})
    select i.id, i.type, i.schema_version, i.subject, i.payload::jsonb, i.dedupe_key, i.payload_hash, i.request_hash,
           ${caused ? db`coalesce(i.correlation_id, c.correlation_id, i.id)` : db`coalesce(i.correlation_id, i.id)`},
           i.causation_id, ${caused ? db`coalesce(c.causation_depth + 1, 0)` : db`0`}, i.occurred_at::timestamptz, ${origin}, statement_timestamp()
      from ${source}
      ${caused ? db`left join lateral (select correlation_id, causation_depth from ${table} where id = i.causation_id) c on true` : db``}
      ${one ? db`` : db`order by i.ord`}
    on conflict (dedupe_key) do nothing
    returning tx_id::text as tx_id, seq, id, ${caused ? db`correlation_id, causation_depth,` : db``}
              (select ${db.unsafe(isoTimestamp('statement_timestamp()'))}) as recorded_at`;
}

function toRow(item: Prepared, appended: Appended, position: string): SignalRow {
  return {
    position,
    id: item.id,
    type: item.type,
    schema_version: item.schemaVersion,
    subject: item.subject,
    payload: item.payload,
    actor: item.actor,
    source: item.source,
    dedupe_key: item.dedupeKey,
    payload_hash: item.payloadHash,
    request_hash: item.requestHash,
    correlation_id: appended.correlation_id ?? item.correlationId ?? item.id,
    causation_id: item.causationId,
    causation_depth: appended.causation_depth ?? 0,
    installation_id: item.installationId,
    trace: item.traceparent,
    occurred_at: item.occurredAt,
    recorded_at: appended.recorded_at,
  };
}

async function findByDedupeKeys(db: Queryable, tenant: Tenant, keys: string[]): Promise<Map<string, SignalRow>> {
  const rows = await db<SignalRow[]>`
    select ${db.unsafe(SIGNAL_COLUMNS)}, request_hash from ${db(`${tenant.schema}.signals`)} where dedupe_key = any(${keys}::text[])`;
  return new Map(rows.map((row) => [row.dedupe_key, row]));
}

/**
 * Appends `items` in one statement and resolves every item to its stored row.
 * Items may share a dedupe key: the first of a key is the one written, the
 * rest resolve to it, as if they had come one after another. `inserted` lists
 * the new rows, in position order, for inline projections.
 */
export async function appendSignals(
  db: Queryable,
  tenant: Tenant,
  items: Prepared[],
): Promise<{ outcomes: Outcome[]; inserted: SignalRow[] }> {
  const firstOfKey = new Map<string, Prepared>();
  for (const item of items) if (!firstOfKey.has(item.dedupeKey)) firstOfKey.set(item.dedupeKey, item);
  const repeatsKey = firstOfKey.size < items.length;
  const distinct = repeatsKey ? [...firstOfKey.values()] : items;
  const appended = new Map<string, Appended>();
  for (const row of await insertSignals(db, tenant, distinct)) appended.set(row.id, row);

  const inserted: SignalRow[] = [];
  const positionOf = positionEncoder();
  // Usually every item is new and its own: each outcome is its inserted row.
  if (!repeatsKey && appended.size === items.length) {
    const outcomes = items.map((item) => {
      const returned = appended.get(item.id)!;
      const row = toRow(item, returned, positionOf(returned));
      inserted.push(row);
      return { row, created: true };
    });
    return { outcomes, inserted };
  }

  const stored = new Map<string, SignalRow>();
  const missing: string[] = [];
  for (const item of distinct) {
    const row = appended.get(item.id);
    if (!row) {
      missing.push(item.dedupeKey);
      continue;
    }
    const signal = toRow(item, row, positionOf(row));
    inserted.push(signal);
    stored.set(item.dedupeKey, signal);
  }
  if (missing.length > 0) for (const [key, row] of await findByDedupeKeys(db, tenant, missing)) stored.set(key, row);

  const outcomes = items.map((item) => {
    // The unique index guarantees a stored row for every skipped key.
    const row = stored.get(item.dedupeKey);
    if (!row) throw new Error(`dedupe key ${item.dedupeKey} skipped but not found`);
    return { row, created: row.id === item.id };
  });
  return { outcomes, inserted };
}
