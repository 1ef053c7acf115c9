#!/usr/bin/env node
/**
 * `signalbus` — one CLI for every process: start (HTTP + worker, the default),
 * serve, worker, migrate, orgs create | export | import, keys create, keys rotate-encryption,
 * registry check | publish | yank | schema, packages list, install, upgrade,
 * installations list, replay rebuild | redeliver | as-of | list | show | cancel.
 */
import { parseArgs } from 'node:util';
import { ConfigError, parseConfig, type Config } from '../config.ts';
import { runStart } from './start.ts';
import { runMigrate } from './migrate.ts';
import { runKeysCreate, runOrgsCreate, runRotateEncryption } from './admin.ts';
import { runOrgsDiscardImport, runOrgsExport, runOrgsImport } from './orgs-move.ts';
import { runInstall, runInstallationsList, runPackagesList, runUpgrade } from './installations.ts';
import { runReplayCancel, runReplayList, runReplayRequest, runReplayShow } from './replay.ts';
import { runRegistryCheck, runRegistryPublish, runRegistrySchema, runRegistryYank } from './registry.ts';

const USAGE = `usage: signalbus <command>

  start                 run the HTTP API and the worker (embedded PostgreSQL when DATABASE_URL is unset)
  serve                 run the HTTP API only
  worker                run the worker only
  migrate               migrate the public schema, graphile-worker and every tenant schema
  migrate --status [--json]   each tenant's schema version and last failure
  orgs create <slug> --name <name> [--json]
  orgs export <slug> > org.ndjson      the org's signals as NDJSON (header, signals, trailer with count and sha256)
  orgs import <file> [--as <slug>] [--json]   verify the whole file, then recreate the org here page by page and
                        make it live at the end; the same command again resumes an interrupted import
  orgs import --discard <slug>         remove an unfinished (interrupted) import of <slug>
  keys create --org <slug> --role viewer|operator|admin [--name <name>] [--json]
  keys create --platform-admin | --support [--name <name>] [--json]
  keys rotate-encryption [--json]   re-wrap every secret under the first SIGNALBUS_ENCRYPTION_KEYS key
  registry check [--registry <dir>] [--json]      fail on a changed, invalid, unpublished or stale registry entry
  registry publish <dir> [--registry <dir>] [--json]   publish <dir>/manifest.json as its name and version
  registry yank <name> <version> [--reason <text>] [--registry <dir>] [--json]
  registry schema [--registry <dir>]             regenerate manifest.schema.json from the manifest's zod schema
  packages list [--registry <dir>] [--json]       the registry's packages and versions
  install <package>@<version> --org <slug> [--config file.json] [--secrets file.json] [--json]
                        request an install (a worker runs its steps)
  upgrade <installation-id> <version> --org <slug> [--config file.json] [--secrets file.json] [--json]
                        request an upgrade; --config: the config for the new version, applied with it
  installations list --org <slug> [--json]        the org's installations: status and error report
  replay rebuild --org <slug> --reason <text> [--projections a,b] [--rate <signals/s>] [--no-wait] [--json]
  replay as-of --org <slug> --reason <text> [--until <position> | --before <time>] [--ttl <s>] [--json]
  replay redeliver --org <slug> --reason <text> [--handlers a,b] [--types a,b] [--subject s]
                        [--from <position>] [--until <position>] [--since <time>] [--before <time>] [--dry-run] [--execute]
                        request a replay and follow it: a progress bar on a terminal, plain lines otherwise;
                        exit 1 when it fails or is cancelled (a worker runs it; docs/replay.md)
  replay list --org <slug> [--status <status>] [--json]
  replay show <id> --org <slug> [--json]
  replay cancel <id> --org <slug> [--reason <text>] [--json]
`;

async function main(argv: string[]): Promise<number> {
  let config: Config;
  try {
    config = parseConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 2;
    }
    throw error;
  }
  const [command, subcommand, ...rest] = argv;
  switch (command) {
    case 'start':
      return runStart(config, { http: true, worker: true, firstRunKey: true });
    case 'serve':
      return runStart(config, { http: true, worker: false, firstRunKey: false });
    case 'worker':
      return runStart(config, { http: false, worker: true, firstRunKey: false });
    case 'migrate': {
      const { values } = parseArgs({
        args: argv.slice(1),
        options: { status: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } },
      });
      return runMigrate(config, values);
    }
    case 'orgs': {
      if (subcommand === 'export' || subcommand === 'import') {
        const { values, positionals } = parseArgs({
          args: rest,
          allowPositionals: true,
          options: { as: { type: 'string' }, discard: { type: 'string' }, json: { type: 'boolean', default: false } },
        });
        if (subcommand === 'import' && values.discard !== undefined && positionals.length === 0) return runOrgsDiscardImport(config, { slug: values.discard });
        if (positionals.length !== 1) break;
        if (subcommand === 'export') return runOrgsExport(config, { slug: positionals[0]! });
        return runOrgsImport(config, { file: positionals[0]!, as: values.as, json: values.json });
      }
      if (subcommand !== 'create') break;
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: { name: { type: 'string' }, json: { type: 'boolean', default: false } },
      });
      const slug = positionals[0];
      if (!slug) break;
      return runOrgsCreate(config, { slug, name: values.name ?? slug, json: values.json });
    }
    case 'keys': {
      if (subcommand === 'rotate-encryption') {
        const { values } = parseArgs({ args: rest, options: { json: { type: 'boolean', default: false } } });
        return runRotateEncryption(config, values);
      }
      if (subcommand !== 'create') break;
      const { values } = parseArgs({
        args: rest,
        options: {
          org: { type: 'string' },
          role: { type: 'string' },
          name: { type: 'string' },
          'platform-admin': { type: 'boolean', default: false },
          support: { type: 'boolean', default: false },
          json: { type: 'boolean', default: false },
        },
      });
      const role = values['platform-admin'] ? 'platform_admin' : values.support ? 'support' : values.role;
      if (!role || (!values.org && role !== 'platform_admin' && role !== 'support')) break;
      return runKeysCreate(config, { org: values.org, role, name: values.name, json: values.json });
    }
    case 'registry': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: { registry: { type: 'string' }, reason: { type: 'string' }, json: { type: 'boolean', default: false } },
      });
      const args = { registry: values.registry, json: values.json };
      if (subcommand === 'check' && positionals.length === 0) return runRegistryCheck(config, args);
      if (subcommand === 'schema' && positionals.length === 0) return runRegistrySchema(config, args);
      if (subcommand === 'publish' && positionals.length === 1) return runRegistryPublish(config, { ...args, source: positionals[0]! });
      if (subcommand === 'yank' && positionals.length === 2) {
        return runRegistryYank(config, { ...args, name: positionals[0]!, version: positionals[1]!, reason: values.reason });
      }
      break;
    }
    case 'packages': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { registry: { type: 'string' }, json: { type: 'boolean', default: false } } });
      if (subcommand === 'list' && positionals.length === 0) return runPackagesList(config, { registry: values.registry, json: values.json });
      break;
    }
    case 'install': {
      const { values, positionals } = parseArgs({
        args: argv.slice(1),
        allowPositionals: true,
        options: { org: { type: 'string' }, config: { type: 'string' }, secrets: { type: 'string' }, json: { type: 'boolean', default: false } },
      });
      if (positionals.length !== 1 || !values.org) break;
      return runInstall(config, { spec: positionals[0]!, org: values.org, config: values.config, secrets: values.secrets, json: values.json });
    }
    case 'upgrade': {
      const { values, positionals } = parseArgs({
        args: argv.slice(1),
        allowPositionals: true,
        options: { org: { type: 'string' }, config: { type: 'string' }, secrets: { type: 'string' }, json: { type: 'boolean', default: false } },
      });
      if (positionals.length !== 2 || !values.org) break;
      return runUpgrade(config, { id: positionals[0]!, version: positionals[1]!, org: values.org, config: values.config, secrets: values.secrets, json: values.json });
    }
    case 'installations': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { org: { type: 'string' }, json: { type: 'boolean', default: false } } });
      if (subcommand === 'list' && positionals.length === 0 && values.org) return runInstallationsList(config, { org: values.org, json: values.json });
      break;
    }
    case 'replay': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          org: { type: 'string' }, reason: { type: 'string' }, projections: { type: 'string' }, handlers: { type: 'string' },
          types: { type: 'string' }, subject: { type: 'string' }, from: { type: 'string' }, until: { type: 'string' },
          since: { type: 'string' }, before: { type: 'string' }, 'dry-run': { type: 'boolean', default: false },
          execute: { type: 'boolean', default: false }, rate: { type: 'string' }, ttl: { type: 'string' }, actor: { type: 'string' },
          status: { type: 'string' }, 'no-wait': { type: 'boolean', default: false }, json: { type: 'boolean', default: false },
        },
      });
      if (!values.org) break;
      const common = { org: values.org, json: values.json, ...(values.actor ? { actor: values.actor } : {}) };
      if ((subcommand === 'rebuild' || subcommand === 'redeliver' || subcommand === 'as-of') && positionals.length === 0) {
        const { 'dry-run': dryRun, 'no-wait': noWait, org: _org, status: _status, ...flags } = values;
        return runReplayRequest(config, subcommand, { ...common, ...flags, dryRun, wait: !noWait });
      }
      if (subcommand === 'list' && positionals.length === 0) return runReplayList(config, { ...common, ...(values.status ? { status: values.status } : {}) });
      if (subcommand === 'show' && positionals.length === 1) return runReplayShow(config, { ...common, id: positionals[0]! });
      if (subcommand === 'cancel' && positionals.length === 1) return runReplayCancel(config, { ...common, id: positionals[0]!, ...(values.reason ? { reason: values.reason } : {}) });
      break;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return 0;
  }
  process.stderr.write(USAGE);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`signalbus: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = error instanceof ConfigError ? 2 : 1;
  },
);
