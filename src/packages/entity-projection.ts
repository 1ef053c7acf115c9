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
          select to_jsonb(t) as row from ${db(table)} t where id = any(${missing}::text[]) order by id for update`;
        for (const id of missing) state.set(id, null);
        for (const { row } of rows) state.set(row.id, row);
      };
      const installations = await db<{ row: EntityRow }[]>`
        select to_jsonb(t) as row from ${db(table)} t where type = ${INSTALLATION_ENTITY} order by id for update`;
      for (const { row } of installations) state.set(row.id, row);
      const touched = new Set<string>();
      const set = (row: EntityRow) => {
        state.set(row.id, row);
        touched.add(row.id);
      };

      for (const signal of signals) {
        if (signal.type.startsWith('installation.')) {
          const installationId = (signal.payload as { installation_id?: unknown }).installation_id;
          if (typeof installationId !== 'string') continue;
          const id = entityId(INSTALLATION_ENTITY, installationId);
          const before = state.get(id) ?? null;
          const after = evolveInstallation((before?.fields as unknown as InstallationRow | undefined) ?? null, signal);
          if (after && (after as unknown) !== before?.fields) {
            set({ id, type: INSTALLATION_ENTITY, key: installationId, fields: { ...after } as Record<string, unknown>, version: (before?.version ?? 0) + 1, tombstone: false, last_signal_id: signal.id });
          }
          continue;
        }
        const live = [...state.values()].filter(
          (row): row is EntityRow => row !== null && row.type === INSTALLATION_ENTITY && (row.fields as { status?: string }).status === 'installed',
        );
        for (const installation of live) {
          const { package: name, version } = installation.fields as { package: string; version: string };
          for (const rule of rulesOf(name, version)) {
            const key = keyOf(rule, signal);
            if (key === undefined) continue;
            const id = entityId(rule.type, key);
            await load([id]);
            const after = applyRule(rule, signal, key, state.get(id) ?? null);
            if (after) set(after);
          }
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
