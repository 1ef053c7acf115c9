/**
 * packages — the package registry: the manifest (zod schema, published as
 * JSON Schema), its checks (ajv for JSON Schemas, CEL compiled in each
 * expression's scope, scopes against the executors), and the registry on
 * disk with its pinned digests. Reading is pure apart from the registry
 * folder; only the CLI publishes and yanks. Installation code asks
 * `PackageRegistry.installable` for a manifest and nothing else. Installations
 * (tenant-owned, folded from `installation.*` signals) live here too.
 */
export { Manifest, manifestJsonSchema, type HandlerRule, type InstallStep, type EntityProjection, type WebhookSpec } from './manifest.ts';
export { checkManifest, type CheckContext, type ManifestCheck } from './check.ts';
export { compileManifestCel, SCOPE_VARIABLES, type CelScope, type CompiledCel } from './cel.ts';
export { compileJsonSchema, schemaErrors } from './json-schema.ts';
export {
  checkRegistry,
  loadRegistry,
  publishVersion,
  yankVersion,
  type PackageEntry,
  type PackageRegistry,
  type RegistryProblem,
  type VersionEntry,
} from './registry.ts';
export { manifestDigest, REGISTRY_DIR } from './registry-files.ts';
export {
  INSTALLATION_STATUSES,
  INSTALLATION_SIGNAL_TYPES,
  installationSubject,
  type InstallationError,
  type InstallationRow,
  type InstallationStatus,
  type InstallationStep,
} from './installation-model.ts';
export { installationsProjection } from './installation-projection.ts';
export { findInstallationOrg, getInstallation, listActiveInstallations, listInstallations, type Installation } from './installation-read.ts';
export {
  configureInstallation,
  installPackage,
  retryInstallation,
  setInstallationEnabled,
  uninstallInstallation,
  upgradeInstallation,
  type InstallResult,
} from './installations.ts';
export { runInstallationJob } from './installation-job.ts';
export { packagePolicyRules, type InstallationDeps } from './installation-steps.ts';
export { celToJson, evaluateFields } from './cel-values.ts';
