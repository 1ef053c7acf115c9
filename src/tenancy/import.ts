/**
 * Importing an org from an export file (org-file.ts), into this database or
 * another. The file is read twice, streamed both times (memory holds a page,
 * never the file): once to verify it whole — header, every line, trailer
 * count and sha256 — before anything is written; then to write it.
 *
 * The write never holds one long transaction: a transaction still open
 * anywhere on the server holds back every org's log readers (streams,
 * dispatcher, replays read below pg_snapshot_xmin). So the org is made first
 * with status `importing` — the tenant directory does not find it: routes
 * answer 404, the dispatcher, streams and workers never see it — and the
 * signals go in pages of bounded size, each page one short transaction with
 * its projection folds and the import's progress (`public.org_imports`).
 * A last short transaction records `org.imported`, the installations' hook
 * routes and the org's own status: only then is it live.
 *
 * A crash or a lost connection midway leaves an `importing` org nobody
 * sees. Running the same import again (same file, same slug) resumes after
 * the last committed page; another file under that slug discards the
 * unfinished org and starts over; `discardImport` removes one outright. A
 * file that turns out wrong while being written (changed between the passes,
 * a line the database refuses) discards the unfinished org as well. An
 * advisory lock per slug, held on its own connection outside any
 * transaction, keeps two imports from writing one org at a time.
 *
 * Signals keep their ids, dedupe keys, request hashes, actors, causation,
 * timestamps and order; positions are this database's (an xid8 is local to
 * a cluster). Projections are folded page by page through the same
 * reducers live writes use. The org keeps its id unless this database
 * already has an org with it. The import is recorded last as `org.imported`,
 * whose position is where the org's handler subscriptions begin: the
 * history was handled at the source and is never handled again here.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Tenant } from '../core/tenant.ts';
import type { Queryable, Sql } from '../db/client.ts';
import { quoteIdent, withTransaction } from '../db/transaction.ts';
import { checksumProjections, type Checksums } from '../projections/rebuild.ts';
import { recordInstallationRoutes } from '../packages/installation-read.ts';
import type { ProjectionRegistry } from '../projections/registry.ts';
import { SIGNAL_COLUMNS, type SignalRow } from '../signals/model.ts';
import { emitSystem } from '../signals/system.ts';
import type { VerbContext } from '../signals/verb-context.ts';
import { findTenant } from './directory.ts';
import { lineHasher, verifyExportLines, type ExportHeader, type ExportTrailer } from './org-file.ts';
import type { ProvisionDeps } from './provision.ts';
import { orgView, schemaNameFor, Slug, type Organization, type OrgView } from './tenant.ts';
import { createTenantSchema } from './tenant-migrations.ts';

export interface ImportDeps extends ProvisionDeps {
  projections: ProjectionRegistry;
}

export interface ImportInput {
  /** Opens the file's lines; called twice (verify, then write), each time from the start. */
  lines(): AsyncIterable<string>;
  /** The slug to import as; the file's by default. */
  as?: string;
  /** Signal lines per page (one transaction each); a page also ends past `pageBytes`. */
  pageSize?: number;
  pageBytes?: number;
  /** A pause between pages (throttling on a busy server). */
  pageDelayMs?: number;
  /** After each committed page: signal lines written so far, of `total`. */
  onProgress?(progress: { written: number; total: number }): void;
}

export interface OrgImported {
  source: ExportHeader['source'];
  source_org: { id: string; slug: string };
  source_positions: ExportHeader['positions'];
  signals: number;
  sha256: string;
  secrets_to_reenter: ExportHeader['secrets'];
}

declare module '../signals/system.ts' {
  interface SystemSignalPayloads {
    'org.imported': OrgImported;
  }
}

export interface ImportReport extends OrgImported {
  org: OrgView;
  checksums: Checksums;
  /** Signal lines an earlier, interrupted run of this import had written (0 when it started afresh). */
  resumed_after: number;
}

/** Columns written from each line; tx_id and seq are this database's. */
const COLUMNS = `id, type, schema_version, subject, payload, actor, source, dedupe_key, payload_hash, request_hash,
  correlation_id, causation_id, causation_depth, installation_id, trace, occurred_at, recorded_at`;
const FROM_LINE = `l->>'id', l->>'type', (l->>'schema_version')::int, l->>'subject', l->'payload', l->'actor', l->>'source',
  l->>'dedupe_key', l->>'payload_hash', l->>'request_hash', l->>'correlation_id', l->>'causation_id',
  coalesce((l->>'causation_depth')::int, 0), l->>'installation_id', l->>'trace',
  (l->>'occurred_at')::timestamptz, (l->>'recorded_at')::timestamptz`;

const PAGE_BYTES = 4 * 1024 * 1024;

export async function importOrg(deps: ImportDeps, { ctx, input }: { ctx: Omit<VerbContext, 'tenant'>; input: ImportInput }): Promise<ImportReport> {
  const { header, trailer } = await verifyExportLines(input.lines());
  const slug = input.as ?? header.org.slug;
  const parsedSlug = Slug.safeParse(slug);
  if (!parsedSlug.success) throw new DomainError('validation_failed', 'invalid slug', [{ path: 'as', message: parsedSlug.error.issues[0]!.message }]);
  if (header.schema_version > deps.tenantMigrations.length) {
    throw new DomainError(
      'validation_failed',
      `the export comes from tenant schema version ${header.schema_version}; this signalbus knows ${deps.tenantMigrations.length}: upgrade it first`,
    );
  }

  return withImportLock(deps.sql, slug, async () => {
    const { org, written: resumedAfter } = await startImport(deps, slug, header, trailer);
    const count = await writeSignals(deps, org, trailer, input, resumedAfter);
    const imported: OrgImported = {
      source: header.source,
      source_org: { id: header.org.id, slug: header.org.slug },
      source_positions: header.positions,
      signals: count,
      sha256: trailer.sha256,
      secrets_to_reenter: header.secrets,
    };
    // Read before the org goes live, so nothing written here since is counted; a read holds no horizon back.
    const checksums = await checksumProjections(deps.sql, org, deps.projections.projections);
    const live = await goLive(deps, ctx, org, header, imported);
    return { ...imported, org: orgView(live), checksums, resumed_after: resumedAfter };
  });
}

/**
 * Removes an unfinished import of `slug`: its schema and its row. Refuses a
 * live org and an import still running. Answers whether there was one.
 */
export async function discardImport(deps: { sql: Sql }, slug: string): Promise<boolean> {
  return withImportLock(deps.sql, slug, async () => {
    const org = await findTenant(deps.sql, 'slug', slug);
    if (!org) return false;
    if (org.status !== 'importing') throw new DomainError('conflict', `${slug} is a live organization, not an unfinished import`);
    await dropUnfinished(deps.sql, org);
    return true;
  });
}

/**
 * Runs `fn` holding the slug's import lock: a session advisory lock on a
 * connection of its own, in no transaction (it holds no horizon back). A
 * killed process's lock goes with its connection.
 */
async function withImportLock<T>(sql: Sql, slug: string, fn: () => Promise<T>): Promise<T> {
  const connection = await sql.reserve();
  const key = `signalbus.org-import:${slug}`;
  try {
    const [row] = await connection<{ locked: boolean }[]>`select pg_try_advisory_lock(hashtextextended(${key}, 0)) as locked`;
    if (!row!.locked) throw new DomainError('conflict', `an import into ${slug} is running`);
    try {
      return await fn();
    } finally {
      await connection`select pg_advisory_unlock(hashtextextended(${key}, 0))`.catch(() => {});
    }
  } finally {
    connection.release();
  }
}

/**
 * One short transaction: resumes the unfinished import of this same file
 * under `slug`, or (discarding another file's unfinished import) makes the
 * org anew — row with status `importing`, schema, progress row.
 */
async function startImport(
  deps: ImportDeps,
  slug: string,
  header: ExportHeader,
  trailer: ExportTrailer,
): Promise<{ org: Organization; written: number }> {
  return withTransaction(deps.sql, undefined, async (tx) => {
    const taken = await findTenant(tx.sql, 'slug', slug);
    if (taken && taken.status !== 'importing') {
      throw new DomainError('conflict', `an organization with slug ${slug} already exists here; import --as another slug`);
    }
    if (taken) {
      const [progress] = await tx.sql<{ sha256: string; written: number }[]>`
        select sha256, written from public.org_imports where org_id = ${taken.id}`;
      if (progress?.sha256 === trailer.sha256) return { org: taken, written: progress.written };
      await dropUnfinishedIn(tx.sql, taken);
    }
    const idTaken = await findTenant(tx.sql, 'id', header.org.id);
    const [row] = await tx.sql<{ id: string }[]>`
      insert into public.organizations (id, slug, name, schema_name, status)
      values (${idTaken ? newId('org') : header.org.id}, ${slug}, ${header.org.name}, ${schemaNameFor(slug)}, 'importing')
      returning id`;
    const org = (await findTenant(tx.sql, 'id', row!.id))!;
    await createTenantSchema(tx.sql, org, deps.tenantMigrations);
    await tx.sql`
      insert into public.org_imports (org_id, sha256, signals) values (${org.id}, ${trailer.sha256}, ${trailer.count})`;
    return { org, written: 0 };
  });
}

/** Drops an unfinished org's schema and row (its progress, migration status and routes go with the row). */
async function dropUnfinishedIn(db: Queryable, org: Organization): Promise<void> {
  await db.unsafe(`drop schema if exists ${quoteIdent(org.schema)} cascade`);
  await db`delete from public.organizations where id = ${org.id} and status = 'importing'`;
}

const dropUnfinished = (sql: Sql, org: Organization) => withTransaction(sql, undefined, (tx) => dropUnfinishedIn(tx.sql, org));

/**
 * The second pass: hashes every line again and writes the signal lines after
 * `skip` (already written by an interrupted run) page by page. Answers the
 * count of signal lines; a file that differs from the verified one, or a line
 * the database refuses, discards the unfinished org.
 */
async function writeSignals(deps: ImportDeps, org: Organization, trailer: ExportTrailer, input: ImportInput, skip: number): Promise<number> {
  const pageSize = input.pageSize ?? 1000;
  const pageBytes = input.pageBytes ?? PAGE_BYTES;
  const hash = lineHasher();
  let count = 0;
  let written = skip;
  let page: string[] = [];
  let bytes = 0;
  const flush = async () => {
    if (page.length === 0) return;
    if (written > skip && input.pageDelayMs) await sleep(input.pageDelayMs);
    await writePage(deps, org, page, written);
    written += page.length;
    page = [];
    bytes = 0;
    input.onProgress?.({ written, total: trailer.count });
  };
  try {
    let first = true;
    let previous: string | undefined;
    for await (const line of input.lines()) {
      // The trailer is the last line: every line is held back one step.
      if (previous !== undefined) {
        hash.add(previous);
        if (first) first = false;
        else if (count++ >= skip) {
          page.push(previous);
          bytes += previous.length;
          if (page.length >= pageSize || bytes >= pageBytes) await flush();
        }
      }
      previous = line;
    }
    await flush();
  } catch (error) {
    if (!refusedData(error)) throw error;
    await dropUnfinished(deps.sql, org);
    throw new DomainError('validation_failed', `the export file is refused: the page of signal lines from line ${written + 2} cannot be stored (${(error as Error).message}); the unfinished org was removed`);
  }
  // The file was verified whole; this pass must have read the same file.
  if (count !== trailer.count || hash.hex() !== trailer.sha256) {
    await dropUnfinished(deps.sql, org);
    throw new DomainError('conflict', 'the export file changed while it was being imported; the unfinished org was removed');
  }
  return count;
}

/** PostgreSQL's data exception (22) and integrity violation (23) classes: the line, not the moment, is at fault. */
function refusedData(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23]/.test(code);
}

/**
 * One page, one transaction: the progress row moves from `from` (another
 * process that moved it first fails this one) and the page's signals are
 * appended in file order and folded into the projections.
 */
async function writePage(deps: ImportDeps, org: Organization, lines: string[], from: number): Promise<void> {
  await withTransaction(deps.sql, undefined, async (tx) => {
    const [moved] = await tx.sql`
      update public.org_imports set written = written + ${lines.length}, updated_at = now()
       where org_id = ${org.id} and written = ${from}
      returning org_id`;
    if (!moved) throw new DomainError('conflict', `another import into ${org.slug} has written past this one`);
    await insertPage(deps, tx.sql, org, lines);
  });
}

/** Appends one page of lines in file order and folds its signals into the projections. */
async function insertPage(deps: ImportDeps, db: Queryable, tenant: Tenant, lines: string[]): Promise<void> {
  const rows = await db<SignalRow[]>`
    insert into ${db(`${tenant.schema}.signals`)} (${db.unsafe(COLUMNS)})
    select ${db.unsafe(FROM_LINE)}
      from jsonb_array_elements(${`[${lines.join(',')}]`}::text::jsonb) with ordinality as line(l, ord)
     order by ord
    returning ${db.unsafe(SIGNAL_COLUMNS)}`;
  const handled = rows.filter((signal) => deps.projections.handlesAny([signal.type]));
  if (handled.length === 0) return;
  handled.sort((a, b) => (a.position < b.position ? -1 : a.position > b.position ? 1 : 0));
  await deps.projections.apply(db, tenant, handled);
}

/**
 * The last short transaction: `org.imported`, the installations' hook routes,
 * the progress row gone and the org's status from the file — live at commit.
 */
async function goLive(
  deps: ImportDeps,
  ctx: Omit<VerbContext, 'tenant'>,
  org: Organization,
  header: ExportHeader,
  imported: OrgImported,
): Promise<Organization> {
  const status = header.org.status === 'suspended' ? 'suspended' : 'active';
  await withTransaction(deps.sql, undefined, async (tx) => {
    await emitSystem(deps, { ...ctx, tenant: org }, tx, {
      type: 'org.imported',
      subject: `org:${org.id}`,
      payload: imported,
      dedupe_key: `org.imported:${imported.sha256}`,
    });
    await recordInstallationRoutes(tx.sql, org);
    await tx.sql`delete from public.org_imports where org_id = ${org.id}`;
    const [live] = await tx.sql`
      update public.organizations set status = ${status} where id = ${org.id} and status = 'importing' returning id`;
    if (!live) throw new DomainError('conflict', `the import into ${org.slug} was discarded while it ran`);
  });
  return { ...org, status };
}
