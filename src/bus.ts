/**
 * The domain's wiring as one value: what the HTTP operations, the worker's
 * tasks and the benchmarks call. Built only by `src/app.ts`.
 */
import type { DirectiveDeps } from './directives/deps.ts';
import type { ExecutorRegistry } from './executors/registry.ts';
import type { OrgHandlers } from './handlers/org-handlers.ts';
import type { InstallationDeps } from './packages/installation-steps.ts';
import type { RuntimeDeps } from './handlers/runtime.ts';
import type { EmitDeps } from './signals/emit.ts';
import type { SecretVerbDeps } from './secrets/verbs.ts';
import type { ReplayDeps } from './replay/deps.ts';
import type { ProvisionDeps } from './tenancy/provision.ts';

export interface Bus {
  emit: EmitDeps;
  /** Provisioning organizations. */
  orgs: ProvisionDeps;
  /** The vault's verbs and their audit signals. */
  secrets: SecretVerbDeps;
  directives: DirectiveDeps;
  runtime: RuntimeDeps;
  handlers: OrgHandlers;
  executors: ExecutorRegistry;
  replays: ReplayDeps;
  /** Installing, upgrading and uninstalling packages. */
  installations: InstallationDeps;
}
