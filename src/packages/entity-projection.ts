/**
 * The entities projection: installed packages' manifest `projections` rules
 * (docs/packages.md, "Projections") folded into `entities`. Which rules apply
 * to a signal depends on the installations live when it was written, so the
 * projection folds `installation.*` signals too, into rows of its own table
 * (type `$installation`): rebuilt alone, it sees the same installations at
 * each signal as it did live. Rules see only the log (no config), so a
 * rebuild gives the same rows.
 */
import type { Queryable } from '../db/client.ts';
import { typeMatcher } from '../handlers/registry.ts';
import type { SignalRow } from '../signals/model.ts';
import type { Projection } from '../projections/registry.ts';
import { toCel } from '../policy/cel.ts';
import { compileManifestCel, type CelProgram } from './cel.ts';
import { evaluateFields } from './cel-values.ts';
import { evolveInstallation, type InstallationRow } from './installation-model.ts';
import type { EntityProjection } from './manifest.ts';
import type { PackageRegistry } from './registry.ts';
import { signalVariable } from './rules.ts';

/** The entity type of the projection's record of installations; no manifest type starts with `$`. */
export const INSTALLATION_ENTITY = '$installation';

export interface EntityRow {
  id: string;
  type: string;
  key: string;
  fields: Record<string, unknown>;
  version: number;
  tombstone: boolean;
  last_signal_id: string;
}

interface CompiledRule {
  type: string;
  on: (type: string) => boolean;
  tombstoneOn: (type: string) => boolean;
  when?: CelProgram;
  key: CelProgram;
  fields: Record<string, CelProgram>;
}

const program = (expression: string): CelProgram => {
  const compiled = compileManifestCel(expression, 'projection');
  // Registry manifests passed `registry check`; one that does not compile here never loads.
  if (!compiled.ok) throw new Error(`projection CEL does not compile: ${compiled.message}`);
  return compiled.program;
};

function compileRule(rule: EntityProjection): CompiledRule {
  return {
    type: rule.type,
    on: typeMatcher(rule.on),
    tombstoneOn: typeMatcher(rule.tombstone_on),
    ...(rule.when ? { when: program(rule.when) } : {}),
    key: program(rule.key),
    fields: Object.fromEntries(Object.entries(rule.fields).map(([name, text]) => [name, program(text)])),
  };
}

/** Longer keys are skipped: no route could address them. */
export const MAX_ENTITY_KEY = 300;

export const entityId = (type: string, key: string) => `${type}:${key}`;

/**
 * The entity after one rule ran on `signal`, or `before` when the rule does
 * not apply. A rule whose CEL fails on a signal (or gives a key that is not a
 * string) skips that signal: a fold cannot refuse what the log already holds.
 */
function keyOf(rule: CompiledRule, signal: SignalRow): string | undefined {
  if (!rule.tombstoneOn(signal.type) && !rule.on(signal.type)) return undefined;
  try {
    const key = rule.key({ signal: signalVariable(signal), entity: null });
    return typeof key === 'string' && key.length > 0 && key.length <= MAX_ENTITY_KEY ? key : undefined;
  } catch {
    return undefined;
  }
}

function applyRule(rule: CompiledRule, signal: SignalRow, key: string, before: EntityRow | null): EntityRow | undefined {
  const tombstones = rule.tombstoneOn(signal.type);
  try {
    const base = { signal: signalVariable(signal) };
    const id = entityId(rule.type, key);
    const variables = { ...base, entity: before && !before.tombstone ? toCel(before.fields) : null };
    if (rule.when && rule.when(variables) !== true) return undefined;
    const fields = tombstones ? (before?.fields ?? {}) : { ...(before?.tombstone ? {} : before?.fields), ...evaluateFields(rule.fields, variables, rule.type) };
    return { id, type: rule.type, key, fields, version: (before?.version ?? 0) + 1, tombstone: tombstones, last_signal_id: signal.id };
  } catch {
    return undefined;
  }
}

interface Visit {
  signal: SignalRow;
  /** `after`: the installation this signal leaves, when it changes it. */
  installation?: { id: string; key: string; after?: InstallationRow };
  entities: { rule: CompiledRule; key: string; id: string }[];
}

/**
 * Which entities each signal of a batch touches, following the installations
 * live at that signal (the batch's own installation signals included), so the
 * whole batch's entities can be locked before the fold reads any of them.
 */
function planVisits(
  signals: readonly SignalRow[],
  state: ReadonlyMap<string, EntityRow | null>,
  rulesOf: (name: string, version: string) => CompiledRule[],
): Visit[] {
  const installations = new Map<string, InstallationRow | null>();
  for (const [id, row] of state) if (row?.type === INSTALLATION_ENTITY) installations.set(id, row.fields as unknown as InstallationRow);
  const visits: Visit[] = [];
  for (const signal of signals) {
    if (signal.type.startsWith('installation.')) {
      const installationId = (signal.payload as { installation_id?: unknown }).installation_id;
      if (typeof installationId !== 'string') continue;
      const id = entityId(INSTALLATION_ENTITY, installationId);
      const before = installations.get(id) ?? null;
      const after = evolveInstallation(before, signal);
      if (after) installations.set(id, after);
      visits.push({ signal, installation: { id, key: installationId, ...(after && after !== before ? { after } : {}) }, entities: [] });
      continue;
    }
    const entities: Visit['entities'] = [];
    for (const installation of installations.values()) {
      if (installation?.status !== 'installed') continue;
      for (const rule of rulesOf(installation.package, installation.version)) {
        const key = keyOf(rule, signal);
        if (key !== undefined) entities.push({ rule, key, id: entityId(rule.type, key) });
      }
    }
    if (entities.length > 0) visits.push({ signal, entities });
  }
  return visits;
}

export function entitiesProjection(packages: PackageRegistry): Projection {
  const rules = new Map<string, CompiledRule[]>();
  const rulesOf = (name: string, version: string) => {
    const at = `${name}@${version}`;
    let compiled = rules.get(at);
    if (!compiled) {
      compiled = (packages.getVersion(name, version)?.manifest.projections ?? []).map(compileRule);
      rules.set(at, compiled);
    }
    return compiled;
  };
  const patterns = packages
    .list()
    .flatMap((entry) => entry.versions.flatMap((version) => (version.manifest.projections ?? []).flatMap((rule) => [...rule.on, ...rule.tombstone_on])));
  const projected = typeMatcher(patterns);

  return {
    name: 'entities',
    table: 'entities',
    handles: (type) => type.startsWith('installation.') || projected(type),
    async apply(db: Queryable, tenant, signals) {
      const table = `${tenant.schema}.entities`;
      const state = new Map<string, EntityRow | null>();
      const load = async (ids: string[]) => {
        const missing = ids.filter((id) => !state.has(id));
        if (missing.length === 0) return;
        const rows = await db<{ row: EntityRow }[]>`
          select to_jsonb(t) as row from ${db(table)} t where id = any(${missing}::text[])`;
        for (const id of missing) state.set(id, null);
        for (const { row } of rows) state.set(row.id, row);
      };
      // Installation rows are shared by every projected signal: a batch that
      // changes none only needs them stable, so concurrent batches of one org
      // do not queue behind each other here.
      const changesInstallations = signals.some((signal) => signal.type.startsWith('installation.'));
      const installations = changesInstallations
        ? await db<{ row: EntityRow }[]>`
            select to_jsonb(t) as row from ${db(table)} t where type = ${INSTALLATION_ENTITY} order by id for update`
        : await db<{ row: EntityRow }[]>`
            select to_jsonb(t) as row from ${db(table)} t where type = ${INSTALLATION_ENTITY} order by id for share`;
      for (const { row } of installations) state.set(row.id, row);
      const touched = new Set<string>();
      const set = (row: EntityRow) => {
        state.set(row.id, row);
        touched.add(row.id);
      };

      const visits = planVisits(signals, state, rulesOf);
      // Entities this batch may write, locked in one sorted order before any is
      // read: rows that do not exist yet cannot be locked with FOR UPDATE, and
      // two batches creating the same entity must not both start from nothing.
      const ids = [...new Set(visits.flatMap((visit) => visit.entities.map((entity) => entity.id)))];
      if (ids.length > 0) {
        await db`
          select pg_advisory_xact_lock(k) from (
            select distinct hashtextextended(${table} || ':' || id, 0) as k from unnest(${ids}::text[]) as id order by k
          ) locks`;
        await load(ids);
      }

      for (const visit of visits) {
        const { signal } = visit;
        if (visit.installation) {
          const { id, key, after } = visit.installation;
          if (after) {
            const version = (state.get(id)?.version ?? 0) + 1;
            set({ id, type: INSTALLATION_ENTITY, key, fields: { ...after } as Record<string, unknown>, version, tombstone: false, last_signal_id: signal.id });
          }
          continue;
        }
        for (const { rule, key, id } of visit.entities) {
          await load([id]);
          const after = applyRule(rule, signal, key, state.get(id) ?? null);
          if (after) set(after);
        }
      }
      const rows = [...touched].map((id) => state.get(id)).filter((row): row is EntityRow => row !== null && row !== undefined);
      if (rows.length === 0) return;
      await db`
        insert into ${db(table)}
        select * from jsonb_populate_recordset(null::${db(table)}, ${JSON.stringify(rows)}::text::jsonb)
        on conflict (id) do update set type = excluded.type, key = excluded.key, fields = excluded.fields,
          version = excluded.version, tombstone = excluded.tombstone, last_signal_id = excluded.last_signal_id`;
    },
    // Reads join the log for each row's position (entity-read.ts): an as-of
    // schema keeps the positions of the signals its rows name, nothing more.
    async materializeReads(db, live, asOf) {
      await db`
        create table ${db(`${asOf.schema}.signals`)} as
        select id, tx_id, seq from ${db(`${live.schema}.signals`)}
         where id in (select last_signal_id from ${db(`${asOf.schema}.entities`)})`;
      await db`alter table ${db(`${asOf.schema}.signals`)} add primary key (id)`;
    },
  };
}
