/**
 * `signalbus registry check | publish <dir> | yank <name> <version> | schema`:
 * the package registry on disk. No database: the check needs only the
 * executors, to know which directive kinds exist.
 */
import { DomainError } from '../core/errors.ts';
import type { Config } from '../config.ts';
import { builtinExecutors } from '../executors/builtin.ts';
import { createExecutorRegistry } from '../executors/registry.ts';
import { checkRegistry, publishVersion, writeManifestSchema, yankVersion } from '../packages/registry.ts';
import { REGISTRY_DIR } from '../packages/registry-files.ts';

export interface RegistryArgs {
  /** The registry folder: --registry, else SIGNALBUS_REGISTRY_DIR, else the shipped one. */
  registry: string | undefined;
  json: boolean;
  now?: () => Date;
}

export function print(value: unknown, json: boolean, human: string) {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human}\n`);
}

/** A refused publish or yank: the problem on stdout with --json, else on stderr. Exit 1. */
export function refused(error: unknown, json: boolean): number {
  if (!(error instanceof DomainError)) throw error;
  const body = { error: { code: error.code, message: error.message, ...(error.errors ? { errors: error.errors } : {}) } };
  if (json) process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
  else process.stderr.write(`${[error.message, ...(error.errors ?? []).map((item) => `  ${item.path}: ${item.message}`)].join('\n')}\n`);
  return 1;
}

function context(config: Config, args: RegistryArgs) {
  return {
    dir: args.registry ?? config.SIGNALBUS_REGISTRY_DIR ?? REGISTRY_DIR,
    // Only kinds and params schemas are read: no provider is called.
    executors: createExecutorRegistry(builtinExecutors({ allowPrivateTargets: false })),
    now: args.now ?? (() => new Date()),
  };
}

export async function runRegistryCheck(config: Config, args: RegistryArgs): Promise<number> {
  const { dir, executors } = context(config, args);
  const { problems, versions } = await checkRegistry(dir, { executors });
  const lines = problems.map((problem) => `${problem.where}${problem.path ? ` ${problem.path}` : ''}: ${problem.message}`);
  print({ ok: problems.length === 0, versions, problems }, args.json, problems.length === 0 ? `registry ok: ${versions} published versions` : lines.join('\n'));
  return problems.length === 0 ? 0 : 1;
}

export async function runRegistryPublish(config: Config, args: RegistryArgs & { source: string }): Promise<number> {
  const { dir, executors, now } = context(config, args);
  try {
    const published = await publishVersion(dir, args.source, { executors, now });
    print({ published }, args.json, `${published.unchanged ? 'already published' : 'published'} ${published.name}@${published.version} (sha256 ${published.sha256})`);
    return 0;
  } catch (error) {
    return refused(error, args.json);
  }
}

export async function runRegistryYank(config: Config, args: RegistryArgs & { name: string; version: string; reason: string | undefined }): Promise<number> {
  const { dir, now } = context(config, args);
  try {
    const yanked = await yankVersion(dir, { name: args.name, version: args.version, ...(args.reason ? { reason: args.reason } : {}) }, { now });
    print({ yanked }, args.json, `${yanked.unchanged ? 'already yanked' : 'yanked'} ${yanked.name}@${yanked.version}`);
    return 0;
  } catch (error) {
    return refused(error, args.json);
  }
}

export async function runRegistrySchema(config: Config, args: RegistryArgs): Promise<number> {
  const { dir } = context(config, args);
  await writeManifestSchema(dir);
  print({ written: `${dir}/manifest.schema.json` }, args.json, `wrote ${dir}/manifest.schema.json`);
  return 0;
}
