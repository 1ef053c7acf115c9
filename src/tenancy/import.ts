/**
 * Importing an org from an export file (org-file.ts), into this database or
 * another. The file is read twice: once to verify it whole — header,
 * every line, trailer count and sha256 — before anything is written; then
 * to write it, in ONE transaction with the org's row and schema, so a
 * failure at any point (the file changing between the passes included)
 * leaves nothing behind.
 *
 * Signals keep their ids, dedupe keys, request hashes, actors, causation,
 * timestamps and order; positions are this database's (an xid8 is local to
 * a cluster). Projections are folded page by page through the same
 * reducers live writes use. The org keeps its id unless this database
 * already has an org with it. The import is recorded last as `org.imported`,
 * whose position is where the org's handler subscriptions begin: the
 * history was handled at the source and is never handled again here.
 */
import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Tenant } from '../core/tenant.ts';
import { withTransaction } from '../db/transaction.ts';
import { checksumProjections, type Checksums } from '../projections/rebuild.ts';
import { recordInstallationRoutes } from '../packages/installation-read.ts';
import type { ProjectionRegistry } from '../projections/registry.ts';
import { SIGNAL_COLUMNS, type SignalRow } from '../signals/model.ts';
import { emitSystem } from '../signals/system.ts';
import type { VerbContext } from '../signals/verb-context.ts';
import { findTenant } from './directory.ts';
import { lineHasher, verifyExportLines, type ExportHeader } from './org-file.ts';
import type { ProvisionDeps } from './provision.ts';
import { orgView, schemaNameFor, Slug, type OrgView } from './tenant.ts';
import { createTenantSchema } from './tenant-migrations.ts';

export interface ImportDeps extends ProvisionDeps {
  projections: ProjectionRegistry;
}

export interface ImportInput {
  /** Opens the file's lines; called twice (verify, then write), each time from the start. */
  lines(): AsyncIterable<string>;
  /** The slug to import as; the file's by default. */
  as?: string;
  pageSize?: number;
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
}

/** Columns written from each line; tx_id and seq are this database's. */
const COLUMNS = `id, type, schema_version, subject, payload, actor, source, dedupe_key, payload_hash, request_hash,
  correlation_id, causation_id, causation_depth, installation_id, trace, occurred_at, recorded_at`;
const FROM_LINE = `l->>'id', l->>'type', (l->>'schema_version')::int, l->>'subject', l->'payload', l->'actor', l->>'source',
  l->>'dedupe_key', l->>'payload_hash', l->>'request_hash', l->>'correlation_id', l->>'causation_id',
  coalesce((l->>'causation_depth')::int, 0), l->>'installation_id', l->>'trace',
  (l->>'occurred_at')::timestamptz, (l->>'recorded_at')::timestamptz`;

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
  const pageSize = input.pageSize ?? 1000;

  return withTransaction(deps.sql, undefined, async (tx) => {
    const taken = await findTenant(tx.sql, 'slug', slug);
    if (taken) throw new DomainError('conflict', `an organization with slug ${slug} already exists here; import --as another slug`);
    const idTaken = await findTenant(tx.sql, 'id', header.org.id);
    const [row] = await tx.sql<{ id: string }[]>`
      insert into public.organizations (id, slug, name, schema_name, status)
      values (${idTaken ? newId('org') : header.org.id}, ${slug}, ${header.org.name}, ${schemaNameFor(slug)}, ${header.org.status})
      returning id`;
    const org = (await findTenant(tx.sql, 'id', row!.id))!;
    await createTenantSchema(tx.sql, org, deps.tenantMigrations);

    const hash = lineHasher();
    let count = 0;
    let page: string[] = [];
    const flush = async () => {
      if (page.length === 0) return;
      await insertPage(deps, tx.sql, org, page);
      count += page.length;
      page = [];
    };
    let first = true;
    let previous: string | undefined;
    for await (const line of input.lines()) {
      // The trailer is the last line: every line is held back one step.
      if (previous !== undefined) {
        hash.add(previous);
        if (first) first = false;
        else {
          page.push(previous);
          if (page.length >= pageSize) await flush();
        }
      }
      previous = line;
    }
    await flush();
    // The file was verified whole; this pass must have read the same file.
    if (count !== trailer.count || hash.hex() !== trailer.sha256) {
      throw new DomainError('conflict', 'the export file changed while it was being imported; nothing was written');
    }

    const imported: OrgImported = {
      source: header.source,
      source_org: { id: header.org.id, slug: header.org.slug },
      source_positions: header.positions,
      signals: count,
      sha256: trailer.sha256,
      secrets_to_reenter: header.secrets,
    };
    await emitSystem(deps, { ...ctx, tenant: org }, tx, {
      type: 'org.imported',
      subject: `org:${org.id}`,
      payload: imported,
      dedupe_key: `org.imported:${trailer.sha256}`,
    });
    await recordInstallationRoutes(tx.sql, org);
    const checksums = await checksumProjections(tx.sql, org, deps.projections.projections);
    return { ...imported, org: orgView(org), checksums };
  });
}

/** Appends one page of lines in file order and folds its signals into the projections. */
async function insertPage(deps: ImportDeps, db: Parameters<typeof checksumProjections>[0], tenant: Tenant, lines: string[]): Promise<void> {
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
