/**
 * The package registry: checking it whole (what `signalbus registry check`
 * runs in CI), loading it for the service, publishing a version and yanking
 * one. A published version is immutable: its manifest must keep the digest
 * `index.json` pinned, or it is refused — by the check, and by the loader,
 * which then serves and installs it nowhere.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import semver from 'semver';
import { DomainError, notFound, type FieldError } from '../core/errors.ts';
import { checkManifest, type CheckContext } from './check.ts';
import { manifestJsonSchema, type Manifest } from './manifest.ts';
import {
  INDEX_FILE,
  manifestDigest,
  manifestPath,
  manifestsOnDisk,
  readIndex,
  readJson,
  SCHEMA_FILE,
  writeAtomically,
  writeIndex,
  type PublishedVersion,
  type RegistryIndex,
} from './registry-files.ts';

/** One problem: `where` is `<name>/<version>` or a registry file, `path` a field within it. */
export interface RegistryProblem extends FieldError {
  where: string;
}

export type RegistryContext = Pick<CheckContext, 'executors'>;

export interface VersionEntry extends PublishedVersion {
  version: string;
  /** The manifest as published (what the digest covers). */
  raw: Record<string, unknown>;
  /** The same, checked and with defaults applied. */
  manifest: Manifest;
}

export interface PackageEntry {
  name: string;
  description: string;
  /** The highest version that is not yanked (a release before a pre-release), or null. */
  latest: string | null;
  /** In semver order. */
  versions: VersionEntry[];
}

export interface PackageRegistry {
  /** Packages by name. */
  list(): readonly PackageEntry[];
  get(name: string): PackageEntry | undefined;
  getVersion(name: string, version: string): VersionEntry | undefined;
  /**
   * The manifest to install `name@version` from.
   * @throws DomainError `not_found` for an unknown package or version;
   *   `validation_failed` (at `version`) for a yanked one.
   */
  installable(name: string, version: string): Manifest;
}

const versionsFrom = (index: RegistryIndex) => (name: string) => Object.keys(index.packages[name]?.versions ?? {});

/** The JSON Schema file as it must read: generated from the zod schema. */
export function manifestSchemaText(): string {
  return `${JSON.stringify(manifestJsonSchema(), null, 2)}\n`;
}

interface Verified {
  entries: Map<string, VersionEntry[]>;
  problems: RegistryProblem[];
}

async function verify(dir: string, context: RegistryContext): Promise<Verified> {
  const problems: RegistryProblem[] = [];
  const entries = new Map<string, VersionEntry[]>();
  const read = await readIndex(dir);
  if (!read.ok) return { entries, problems: [{ where: INDEX_FILE, path: '', message: read.message }] };
  const { index } = read;
  const checkContext: CheckContext = { ...context, versionsOf: versionsFrom(index) };
  for (const [name, { versions }] of Object.entries(index.packages)) {
    for (const [version, published] of Object.entries(versions)) {
      const where = `${name}/${version}`;
      const problem = (field: string, message: string) => problems.push({ where, path: field, message });
      const file = await readJson(manifestPath(dir, name, version));
      if (!file.ok) {
        problem('', file.message);
        continue;
      }
      const digest = manifestDigest(file.value);
      if (digest !== published.sha256) {
        problem('', `the manifest changed after it was published (sha256 ${digest}, pinned ${published.sha256}); publish a new version instead`);
        continue;
      }
      const checked = checkManifest(file.value, checkContext);
      if (!checked.ok) {
        for (const error of checked.errors) problem(error.path, error.message);
        continue;
      }
      if (checked.manifest.name !== name) problem('name', `the manifest names ${checked.manifest.name}, but it is published as ${name}`);
      else if (checked.manifest.version !== version) problem('version', `the manifest says ${checked.manifest.version}, but it is published as ${version}`);
      else {
        const list = entries.get(name) ?? [];
        list.push({ ...published, version, raw: file.value as Record<string, unknown>, manifest: checked.manifest });
        entries.set(name, list);
      }
    }
  }
  for (const found of await manifestsOnDisk(dir)) {
    const [name, version] = found.split('/') as [string, string];
    if (!index.packages[name]?.versions[version]) {
      problems.push({ where: found, path: '', message: `not in ${INDEX_FILE}: publish it with signalbus registry publish` });
    }
  }
  return { entries, problems };
}

/**
 * Everything `registry check` reports: unpublished or changed manifests,
 * invalid ones (CEL with its position, unknown scopes, unmet requires), and
 * a manifest.schema.json that no longer matches the zod schema.
 */
export async function checkRegistry(dir: string, context: RegistryContext): Promise<{ problems: RegistryProblem[]; versions: number }> {
  const { entries, problems } = await verify(dir, context);
  let schemaText: string | null = null;
  try {
    schemaText = await readFile(path.join(dir, SCHEMA_FILE), 'utf8');
  } catch {
    // Reported below as missing.
  }
  if (schemaText !== manifestSchemaText()) {
    problems.push({
      where: SCHEMA_FILE,
      path: '',
      message: `${schemaText === null ? 'missing' : 'stale'}: regenerate it from the zod schema with signalbus registry schema`,
    });
  }
  const versions = [...entries.values()].reduce((sum, list) => sum + list.length, 0);
  return { problems, versions };
}

/** Writes manifest.schema.json from the zod schema. */
export async function writeManifestSchema(dir: string): Promise<void> {
  await writeAtomically(path.join(dir, SCHEMA_FILE), manifestSchemaText());
}

/** The registry the service serves: only versions that pass every check; the rest come back as problems to log. */
export async function loadRegistry(dir: string, context: RegistryContext): Promise<{ registry: PackageRegistry; problems: RegistryProblem[] }> {
  const { entries, problems } = await verify(dir, context);
  const packages = [...entries.entries()]
    .map(([name, list]): PackageEntry => {
      const versions = [...list].sort((a, b) => semver.compare(a.version, b.version));
      const live = versions.filter((entry) => !entry.yanked).map((entry) => entry.version);
      const latest = semver.maxSatisfying(live, '*') ?? semver.maxSatisfying(live, '*', { includePrerelease: true });
      const described = versions.find((entry) => entry.version === latest) ?? versions.at(-1)!;
      return { name, description: described.manifest.description, latest, versions };
    })
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  const byName = new Map(packages.map((entry) => [entry.name, entry]));
  const getVersion = (name: string, version: string) => byName.get(name)?.versions.find((entry) => entry.version === version);
  const registry: PackageRegistry = {
    list: () => packages,
    get: (name) => byName.get(name),
    getVersion,
    installable(name, version) {
      if (!byName.has(name)) throw notFound(`package ${name}`);
      const entry = getVersion(name, version);
      if (!entry) throw notFound(`version ${version} of ${name}`);
      if (entry.yanked) {
        throw new DomainError('validation_failed', `${name}@${version} is yanked and cannot be installed`, [
          { path: 'version', message: `yanked${entry.yank_reason ? `: ${entry.yank_reason}` : ''}; install ${byName.get(name)!.latest ?? 'another version'}` },
        ]);
      }
      return entry.manifest;
    },
  };
  return { registry, problems };
}

export interface PublishResult {
  name: string;
  version: string;
  sha256: string;
  /** True when this exact manifest was already published: nothing changed. */
  unchanged: boolean;
}

/**
 * Publishes `<source>/manifest.json` as its name and version.
 * @throws DomainError `validation_failed` listing every problem of the
 *   manifest; `conflict` when that version is published with other content.
 */
export async function publishVersion(dir: string, source: string, context: RegistryContext & { now: () => Date }): Promise<PublishResult> {
  const read = await readIndex(dir);
  if (!read.ok) throw new DomainError('validation_failed', read.message);
  const { index } = read;
  const file = await readJson(path.join(source, 'manifest.json'));
  if (!file.ok) throw new DomainError('validation_failed', file.message);
  const checked = checkManifest(file.value, { ...context, versionsOf: versionsFrom(index) });
  if (!checked.ok) throw new DomainError('validation_failed', 'the manifest is not valid', checked.errors);
  const { name, version } = checked.manifest;
  const sha256 = manifestDigest(file.value);
  const published = index.packages[name]?.versions[version];
  if (published) {
    if (published.sha256 === sha256) return { name, version, sha256, unchanged: true };
    throw new DomainError('conflict', `${name}@${version} is already published with other content; published versions never change, publish a new version`);
  }
  // The file as the author wrote it: the digest is over its canonical form, so its layout is free.
  await writeAtomically(manifestPath(dir, name, version), await readFile(path.join(source, 'manifest.json'), 'utf8'));
  const versions = { ...index.packages[name]?.versions, [version]: { sha256, published_at: context.now().toISOString(), yanked: false } };
  await writeIndex(dir, { packages: { ...index.packages, [name]: { versions } } });
  return { name, version, sha256, unchanged: false };
}

/**
 * Marks a version yanked: still served, never installed anew.
 * @throws DomainError `not_found` for a version that is not published.
 */
export async function yankVersion(
  dir: string,
  input: { name: string; version: string; reason?: string },
  { now }: { now: () => Date },
): Promise<{ name: string; version: string; yanked_at: string; unchanged: boolean }> {
  const read = await readIndex(dir);
  if (!read.ok) throw new DomainError('validation_failed', read.message);
  const { index } = read;
  const published = index.packages[input.name]?.versions[input.version];
  if (!published) throw notFound(`published version ${input.name}@${input.version}`);
  if (published.yanked) return { name: input.name, version: input.version, yanked_at: published.yanked_at ?? '', unchanged: true };
  const yanked: PublishedVersion = { ...published, yanked: true, yanked_at: now().toISOString(), ...(input.reason ? { yank_reason: input.reason } : {}) };
  index.packages[input.name]!.versions[input.version] = yanked;
  await writeIndex(dir, index);
  return { name: input.name, version: input.version, yanked_at: yanked.yanked_at!, unchanged: false };
}
