/**
 * `signalbus packages list`, `signalbus install <package>@<version> --org …
 * --config file.json [--secrets file.json]`, `signalbus upgrade
 * <installation-id> <version> --org … [--config file.json] [--secrets
 * file.json]` and `signalbus installations list --org …`: the registry and the installation verbs the HTTP API calls, with
 * platform authority. `install` records the request; a worker runs its steps.
 */
import { readFile } from 'node:fs/promises';
import type { Config } from '../config.ts';
import { DomainError } from '../core/errors.ts';
import { createExecutorRegistry } from '../executors/registry.ts';
import { builtinExecutors } from '../executors/builtin.ts';
import { listInstallations, type Installation } from '../packages/installation-read.ts';
import { installPackage, upgradeInstallation } from '../packages/installations.ts';
import { REGISTRY_DIR } from '../packages/registry-files.ts';
import { loadRegistry } from '../packages/registry.ts';
import { PLATFORM_ACTOR } from '../signals/actor.ts';
import type { VerbContext } from '../signals/verb-context.ts';
import { withApp } from './admin.ts';
import { print, refused } from './registry.ts';

export async function runPackagesList(config: Config, args: { registry: string | undefined; json: boolean }): Promise<number> {
  const executors = createExecutorRegistry(builtinExecutors({ allowPrivateTargets: false }));
  const { registry } = await loadRegistry(args.registry ?? config.SIGNALBUS_REGISTRY_DIR ?? REGISTRY_DIR, { executors });
  const data = registry.list().map((entry) => ({ name: entry.name, description: entry.description, latest: entry.latest, versions: entry.versions.map((item) => item.version) }));
  print({ data, next_cursor: null }, args.json, data.map((entry) => `${entry.name}\t${entry.latest ?? '(all yanked)'}\t${entry.versions.join(', ')}`).join('\n') || 'no packages');
  return 0;
}

async function readJsonFile(file: string, what: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new DomainError('validation_failed', `${what} ${file} is not readable JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** `<package>@<version>`, split; undefined when it is not of that shape. */
export function parsePackageSpec(spec: string): { package: string; version: string } | undefined {
  const at = spec.lastIndexOf('@');
  if (at <= 0 || at === spec.length - 1) return undefined;
  return { package: spec.slice(0, at), version: spec.slice(at + 1) };
}

const cliContext = async (app: Parameters<Parameters<typeof withApp>[1]>[0], org: string): Promise<VerbContext> => {
  const tenant = await app.deps.tenants.find(org);
  if (!tenant) throw new DomainError('not_found', `no organization ${org}`);
  return { tenant, actor: PLATFORM_ACTOR, source: 'cli' };
};

export async function runInstall(
  config: Config,
  args: { spec: string; org: string; config: string | undefined; secrets: string | undefined; json: boolean },
): Promise<number> {
  const target = parsePackageSpec(args.spec);
  if (!target) {
    process.stderr.write(`expected <package>@<version>, not ${args.spec}\n`);
    return 2;
  }
  try {
    const input = {
      ...target,
      config: args.config ? await readJsonFile(args.config, 'the config file') : {},
      ...(args.secrets ? { secrets: await readJsonFile(args.secrets, 'the secrets file') } : {}),
    };
    return await withApp(
      config,
      async (app) => {
        const { installation, created } = await installPackage(app.deps.bus.installations, { ctx: await cliContext(app, args.org), input });
        print({ installation, created }, args.json, [
          `${created ? 'requested' : 'already installed:'} ${installation.package}@${installation.version} as ${installation.id} (${installation.status})`,
          ...(created ? ['a worker (signalbus worker or start) runs its steps; see: signalbus installations list --org ' + args.org] : []),
        ].join('\n'));
        return 0;
      },
      { vault: Boolean(args.secrets), logToStderr: args.json },
    );
  } catch (error) {
    return refused(error, args.json);
  }
}

/** Without `--config`, the installation's config must fit the new version; refused, the report says what must change. */
export async function runUpgrade(
  config: Config,
  args: { id: string; version: string; org: string; config: string | undefined; secrets: string | undefined; json: boolean },
): Promise<number> {
  try {
    const body = {
      version: args.version,
      ...(args.config ? { config: await readJsonFile(args.config, 'the config file') } : {}),
      ...(args.secrets ? { secrets: await readJsonFile(args.secrets, 'the secrets file') } : {}),
    };
    return await withApp(
      config,
      async (app) => {
        const installation = await upgradeInstallation(app.deps.bus.installations, { ctx: await cliContext(app, args.org), input: { id: args.id, body } });
        print({ installation }, args.json, [
          `requested: ${installation.id} ${installation.package}@${installation.version} → ${args.version}`,
          'a worker (signalbus worker or start) runs its steps; see: signalbus installations list --org ' + args.org,
        ].join('\n'));
        return 0;
      },
      { vault: Boolean(args.secrets), logToStderr: args.json },
    );
  } catch (error) {
    return refused(error, args.json);
  }
}

export async function runInstallationsList(config: Config, args: { org: string; json: boolean }): Promise<number> {
  try {
    return await withApp(
      config,
      async (app) => {
        const ctx = await cliContext(app, args.org);
        const data: Installation[] = [];
        let after: string | undefined;
        do {
          const page = await listInstallations(app.deps.bus.installations, { ctx, input: { limit: 1000, ...(after ? { after } : {}) } });
          data.push(...page.data);
          after = page.next_cursor ?? undefined;
        } while (after);
        const line = (row: Installation) =>
          `${row.id}\t${row.package}@${row.version}\t${row.status}${row.error ? `\tfailed at ${row.error.step}: ${row.error.message}` : ''}`;
        print({ data, next_cursor: null }, args.json, data.map(line).join('\n') || 'no installations');
        return 0;
      },
      { logToStderr: args.json },
    );
  } catch (error) {
    return refused(error, args.json);
  }
}
