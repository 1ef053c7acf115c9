/** Schemas and the response view of the installation routes. */
import { z } from '@hono/zod-openapi';
import { INSTALLATION_OPERATIONS, INSTALLATION_STATUSES, type InstallationRow } from '../packages/installation-model.ts';
import { Actor } from '../signals/actor.ts';
import { PackageName, PackageVersion } from '../packages/manifest.ts';
import { OrgParams } from './schemas.ts';

const StepSchema = z
  .object({ id: z.string(), status: z.enum(['succeeded', 'skipped', 'failed']), detail: z.string().optional() })
  .openapi('InstallationStep');

const UpgradeConfig = z.record(z.string(), z.unknown()).optional().describe("An upgrade's config for the new version: it replaces `config` when the upgrade succeeds");

export const InstallationSchema = z
  .object({
    id: z.string().describe('`ins_…`'),
    package: z.string(),
    version: z.string(),
    status: z.enum(INSTALLATION_STATUSES).describe('Only `installed` is live: handlers, payload schemas, policies, webhook'),
    config: z.record(z.string(), z.unknown()),
    secrets: z.array(z.string()).describe('Names of the secrets stored for the installation; values are never returned'),
    pending: z
      .object({ operation: z.enum(INSTALLATION_OPERATIONS), version: z.string(), attempt: z.number().int(), config: UpgradeConfig })
      .nullable()
      .describe('The install, upgrade or uninstall in progress'),
    steps: z.array(StepSchema).describe('The steps of the last operation, in order'),
    error: z
      .object({ operation: z.enum(INSTALLATION_OPERATIONS), version: z.string(), attempt: z.number().int(), config: UpgradeConfig, step: z.string(), code: z.string(), message: z.string() })
      .nullable()
      .describe('The report of the last failed operation; `POST …/retry` runs it again'),
    backfill_from: z.string().nullable(),
    webhook_url: z.string().optional().describe('Where the provider sends its webhooks, for packages that receive them'),
    created_by: Actor,
    created_at: z.string(),
    updated_at: z.string(),
    last_signal_id: z.string().describe('The last signal folded into it'),
  })
  .openapi('Installation');

export const InstallationParams = OrgParams.extend({ id: z.string().max(64) });

export const InstallBody = z
  .object({
    package: PackageName,
    version: PackageVersion,
    config: z.record(z.string(), z.unknown()).optional().describe("Checked against the version's config schema; errors name JSON pointers"),
    secrets: z.record(z.string(), z.string()).optional().describe('Stored in the vault, owned by the installation; never echoed'),
    backfill_from: z.string().nullable().optional().describe('A log position its handlers start from; absent: from the install'),
  })
  .strict()
  .openapi('InstallRequest');

export const ConfigureBody = z
  .object({ config: z.record(z.string(), z.unknown()).optional(), secrets: z.record(z.string(), z.string()).optional() })
  .strict()
  .openapi('ConfigureInstallationRequest');

export const UpgradeBody = z
  .object({
    version: PackageVersion,
    config: z
      .record(z.string(), z.unknown())
      .optional()
      .describe("The config for the new version, checked against its schema; it replaces the config when the upgrade succeeds. Absent: the existing config must fit"),
    secrets: z.record(z.string(), z.string()).optional().describe('Secrets the new version adds (a required one the installation lacks must be given); never echoed'),
  })
  .strict()
  .openapi('UpgradeInstallationRequest');

export const InstallationResponse = z.object({ installation: InstallationSchema });

/** The API's view: the row, and the hook URL when the package receives webhooks. */
export function installationView(row: InstallationRow, hooksBase: string | null): z.infer<typeof InstallationSchema> {
  return { ...row, ...(hooksBase ? { webhook_url: `${hooksBase}/v1/hooks/${row.id}` } : {}) };
}
