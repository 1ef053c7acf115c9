/**
 * The registry on disk: `index.json` pins each published version's sha256,
 * and `<name>/<version>/manifest.json` holds it. The digest is over the
 * manifest's canonical JSON, so reformatting a file changes nothing and any
 * change of content is caught.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import semver from 'semver';
import { z } from 'zod';
import { canonicalJson, sha256Hex } from '../core/canonical-json.ts';
import { PROJECT_ROOT } from '../db/migrate.ts';
import { PackageName, PackageVersion } from './manifest.ts';

/** The registry shipped with signalbus. */
export const REGISTRY_DIR = path.join(PROJECT_ROOT, 'packages-registry');
export const INDEX_FILE = 'index.json';
export const SCHEMA_FILE = 'manifest.schema.json';
export const MANIFEST_FILE = 'manifest.json';

export const PublishedVersion = z.strictObject({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  published_at: z.iso.datetime(),
  /** Readable still, but not installable anew. */
  yanked: z.boolean().default(false),
  yanked_at: z.iso.datetime().optional(),
  yank_reason: z.string().max(500).optional(),
});
export type PublishedVersion = z.infer<typeof PublishedVersion>;

export const RegistryIndex = z.strictObject({
  packages: z.record(PackageName, z.strictObject({ versions: z.record(PackageVersion, PublishedVersion) })),
});
export type RegistryIndex = z.infer<typeof RegistryIndex>;

/** The digest `index.json` pins: sha256 of the manifest's canonical JSON. */
export function manifestDigest(raw: unknown): string {
  return sha256Hex(canonicalJson(raw));
}

export function manifestPath(dir: string, name: string, version: string): string {
  return path.join(dir, name, version, MANIFEST_FILE);
}

/** Parsed JSON, or why not. */
export async function readJson(file: string): Promise<{ ok: true; value: unknown } | { ok: false; message: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    return { ok: false, message: (error as NodeJS.ErrnoException).code === 'ENOENT' ? `${file} does not exist` : `cannot read ${file}` };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, message: `${file} is not JSON: ${(error as Error).message}` };
  }
}

export async function readIndex(dir: string): Promise<{ ok: true; index: RegistryIndex } | { ok: false; message: string }> {
  const read = await readJson(path.join(dir, INDEX_FILE));
  if (!read.ok) return read;
  const parsed = RegistryIndex.safeParse(read.value);
  if (parsed.success) return { ok: true, index: parsed.data };
  return { ok: false, message: `${INDEX_FILE}: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}` };
}

/** Every `<name>/<version>` that holds a manifest file, published or not. */
export async function manifestsOnDisk(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of await directories(dir)) {
    for (const version of await directories(path.join(dir, name))) {
      if (await exists(manifestPath(dir, name, version))) found.push(`${name}/${version}`);
    }
  }
  return found.sort();
}

async function directories(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
  } catch {
    return [];
  }
}

export async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

/** Writes `index.json` with packages by name and versions in semver order, so diffs stay small. */
export async function writeIndex(dir: string, index: RegistryIndex): Promise<void> {
  const packages: RegistryIndex['packages'] = {};
  for (const name of Object.keys(index.packages).sort()) {
    const versions = index.packages[name]!.versions;
    const ordered: Record<string, PublishedVersion> = {};
    for (const version of Object.keys(versions).sort(semver.compare)) ordered[version] = versions[version]!;
    packages[name] = { versions: ordered };
  }
  await writeAtomically(path.join(dir, INDEX_FILE), `${JSON.stringify({ packages }, null, 2)}\n`);
}

/** Write then rename: a reader never sees half a file. */
export async function writeAtomically(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const temporary = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temporary, text);
  await rename(temporary, file);
}
