/** Response schemas of the package registry routes. */
import { z } from '@hono/zod-openapi';
import type { PackageEntry, VersionEntry } from '../packages/registry.ts';

export const ReleaseSchema = z
  .object({
    version: z.string(),
    sha256: z.string().describe("sha256 of the manifest's canonical JSON, as pinned in the registry index"),
    published_at: z.string(),
    yanked: z.boolean().describe('A yanked version stays readable but cannot be newly installed'),
    yanked_at: z.string().optional(),
    yank_reason: z.string().optional(),
  })
  .openapi('PackageRelease');

export const PackageSummarySchema = z
  .object({
    name: z.string(),
    description: z.string(),
    latest: z.string().nullable().describe('The highest version that is not yanked'),
    versions: z.array(z.string()),
  })
  .openapi('PackageSummary');

export const PackageSchema = z
  .object({ name: z.string(), description: z.string(), latest: z.string().nullable(), versions: z.array(ReleaseSchema) })
  .openapi('Package');

export const PackageParams = z.object({
  package: z.string().openapi({ param: { name: 'package', in: 'path' }, description: 'Package name' }),
});

export const PackageVersionParams = PackageParams.extend({
  version: z.string().openapi({ param: { name: 'version', in: 'path' }, description: 'Exact semantic version' }),
});

export function releaseView(entry: VersionEntry): z.infer<typeof ReleaseSchema> {
  return {
    version: entry.version,
    sha256: entry.sha256,
    published_at: entry.published_at,
    yanked: entry.yanked,
    ...(entry.yanked_at ? { yanked_at: entry.yanked_at } : {}),
    ...(entry.yank_reason ? { yank_reason: entry.yank_reason } : {}),
  };
}

export function packageSummaryView(entry: PackageEntry): z.infer<typeof PackageSummarySchema> {
  return { name: entry.name, description: entry.description, latest: entry.latest, versions: entry.versions.map((item) => item.version) };
}

export function packageView(entry: PackageEntry): z.infer<typeof PackageSchema> {
  return { name: entry.name, description: entry.description, latest: entry.latest, versions: entry.versions.map(releaseView) };
}
