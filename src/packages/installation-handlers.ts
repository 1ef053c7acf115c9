/**
 * The rule handlers an org's live installations serve: each installed
 * installation's manifest rules, compiled with its config. A rule's
 * subscription starts at the signal that made the installation live
 * (`installed`, `enabled` after a disable, `upgraded` for a rule the new
 * version adds) — so signals committed before the dispatcher noticed the
 * installation are not missed — or, right after the install, at the
 * `backfill_from` position it was given.
 */
import type { Tenant } from '../core/tenant.ts';
import type { Queryable, Sql } from '../db/client.ts';
import type { Handler } from '../handlers/registry.ts';
import { PLATFORM_ACTOR } from '../signals/actor.ts';
import { decodeCursor, type Cursor } from '../signals/model.ts';
import { installationSubject } from './installation-model.ts';
import { listActiveInstallations } from './installation-read.ts';
import type { PackageRegistry } from './registry.ts';
import { ruleHandlers } from './rules.ts';

export interface InstallationHandlerDeps {
  sql: Sql;
  packages: PackageRegistry;
  /** An installed version the registry no longer serves (its manifest was refused): its rules cannot run. */
  onMissingManifest?: (installation: { id: string; package: string; version: string }) => void;
}

const LIVE_SINCE = ['installation.installed', 'installation.enabled', 'installation.upgraded'];

export interface LiveSince {
  type: string;
  tx_id: string;
  seq: string;
}

/** Per installation subject, the last signal that made it live. */
export async function liveSince(db: Queryable, tenant: Tenant, subjects: string[]): Promise<Map<string, LiveSince>> {
  const rows = await db<(LiveSince & { subject: string })[]>`
    select distinct on (subject) subject, type, tx_id::text as tx_id, seq::text as seq
      from ${db(`${tenant.schema}.signals`)}
     where subject = any(${subjects}::text[]) and type = any(${LIVE_SINCE}::text[])
     -- Qualified: bare names would sort by the text aliases above ('10' < '9').
     order by subject, signals.tx_id desc, signals.seq desc`;
  return new Map(rows.map(({ subject, ...row }) => [subject, row]));
}

export async function loadInstallationHandlers(deps: InstallationHandlerDeps, tenant: Tenant): Promise<Handler[]> {
  const installations = await listActiveInstallations(deps, { ctx: { tenant, actor: PLATFORM_ACTOR, source: 'system' }, input: undefined });
  if (installations.length === 0) return [];
  const live = await liveSince(deps.sql, tenant, installations.map((installation) => installationSubject(installation.id)));
  const handlers: Handler[] = [];
  for (const installation of installations) {
    const manifest = deps.packages.getVersion(installation.package, installation.version)?.manifest;
    if (!manifest) {
      deps.onMissingManifest?.(installation);
      continue;
    }
    const since = live.get(installationSubject(installation.id));
    const start: Cursor | 'now' =
      installation.backfill_from && (!since || since.type === 'installation.installed')
        ? decodeCursor(installation.backfill_from, 'backfill_from')
        : since
          ? { txId: since.tx_id, seq: since.seq }
          : // Not recorded under its subject (never, by the installation verbs): from when first seen.
            'now';
    handlers.push(...ruleHandlers({ id: installation.id, package: installation.package, version: installation.version, config: installation.config, start }, manifest));
  }
  return handlers;
}
