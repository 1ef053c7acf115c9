/**
 * The steps an installation job runs, in order, inside the one transaction
 * that records its outcome: the platform's own checks (manifest, config,
 * secrets, policies, handlers, webhook, payload schemas, projections), then
 * the manifest's declared steps. Nothing a package declares is live until
 * that transaction records `installed` (or `upgraded`), so a step that throws
 * rolls every earlier step back with it: there is no half-installed package.
 */
import { DomainError } from '../core/errors.ts';
import type { Tx } from '../db/transaction.ts';
import type { DirectiveDeps } from '../directives/deps.ts';
import { proposeDirective } from '../directives/propose.ts';
import { compilePolicy } from '../policy/compile.ts';
import { toCel } from '../policy/cel.ts';
import type { Sql } from '../db/client.ts';
import { emit, type EmitDeps } from '../signals/emit.ts';
import type { VaultDeps } from '../secrets/vault.ts';
import type { VerbContext } from '../signals/verb-context.ts';
import { compileManifestCel, type CelResult, type CelScope } from './cel.ts';
import { evaluateFields } from './cel-values.ts';
import { compileJsonSchema, schemaErrors } from './json-schema.ts';
import type { InstallationOperation, InstallationRow, InstallationStep } from './installation-model.ts';
import type { InstallStep, Manifest } from './manifest.ts';
import type { PackageRegistry } from './registry.ts';

export interface InstallationDeps {
  sql: Sql;
  emit: EmitDeps;
  registry: PackageRegistry;
  vault: VaultDeps;
  directives: DirectiveDeps;
  /**
   * Called before each step with its id; a throw fails that step. Tests
   * inject failures here; nothing else sets it.
   */
  beforeStep?: (step: string, installation: InstallationRow) => void | Promise<void>;
}

/** What a step reports; a failure is a throw. */
type StepOutcome = Pick<InstallationStep, 'status' | 'detail'>;
interface StepPlan {
  id: string;
  run(tx: Tx): Promise<StepOutcome>;
}

const ok = (detail?: string): StepOutcome => ({ status: 'succeeded', ...(detail ? { detail } : {}) });
const skipped = (detail: string): StepOutcome => ({ status: 'skipped', detail });

/** The manifest's policies as the org's policy sees them: `<package>.<id>`. */
export function packagePolicyRules(manifest: Manifest): Manifest['policies'] {
  return manifest.policies.map((rule) => ({ ...rule, id: `${manifest.name}.${rule.id}` }));
}

function compileAll(expressions: [string, string, CelScope, CelResult][]): number {
  for (const [where, expression, scope, result] of expressions) {
    const compiled = compileManifestCel(expression, scope, result);
    if (!compiled.ok) throw new DomainError('validation_failed', `${where}: ${compiled.message}`);
  }
  return expressions.length;
}

const celFields = (where: string, fields: Record<string, string>, scope: CelScope): [string, string, CelScope, CelResult][] =>
  Object.entries(fields).map(([field, expression]) => [`${where}.${field}`, expression, scope, 'any']);

export function configErrors(manifest: Manifest, config: unknown) {
  const schema = compileJsonSchema(manifest.config);
  if (!schema.ok) throw new DomainError('validation_failed', `the config schema of ${manifest.name}@${manifest.version} does not compile: ${schema.message}`);
  return schemaErrors(schema.validate, config);
}

/** The platform's steps for an install or an upgrade to `manifest`. */
function platformSteps(deps: InstallationDeps, ctx: VerbContext, row: InstallationRow, manifest: Manifest): StepPlan[] {
  return [
    {
      id: 'config',
      async run() {
        const errors = configErrors(manifest, row.config);
        if (errors.length > 0) {
          throw new DomainError('validation_failed', `the config does not fit ${manifest.name}@${manifest.version}: ${errors.map((e) => `${e.path || '/'} ${e.message}`).join('; ')}`, errors);
        }
        return ok();
      },
    },
    {
      id: 'secrets',
      async run(tx) {
        const stored = await tx.sql<{ name: string }[]>`
          select distinct name from ${tx.sql(`${ctx.tenant.schema}.secrets`)} where owner = any(${[row.id, 'org']}::text[])`;
        const names = new Set(stored.map(({ name }) => name));
        const missing = manifest.secrets.filter((secret) => secret.required && !names.has(secret.name)).map((secret) => secret.name);
        if (missing.length > 0) throw new DomainError('validation_failed', `required secrets are missing: ${missing.join(', ')}`);
        return ok(`${manifest.secrets.length} declared, ${row.secrets.length} stored for the installation`);
      },
    },
    {
      id: 'policies',
      async run() {
        const rules = packagePolicyRules(manifest);
        if (rules.length === 0) return skipped('the package has no default policies');
        compilePolicy({ rules });
        return ok(`${rules.map((rule) => rule.id).join(', ')} apply to its directives while installed`);
      },
    },
    {
      id: 'handlers',
      async run() {
        const count = compileAll(
          manifest.handlers.flatMap((rule, i) => {
            const where = `handlers.${i}`;
            const output = rule.propose
              ? [...celFields(`${where}.propose.params`, rule.propose.params, 'handler'), ...(rule.propose.key ? [[`${where}.propose.key`, rule.propose.key, 'handler', 'string'] as const] : [])]
              : [...celFields(`${where}.emit.payload`, rule.emit!.payload, 'handler'), ...(rule.emit!.key ? [[`${where}.emit.key`, rule.emit!.key, 'handler', 'string'] as const] : [])];
            return [...(rule.when ? [[`${where}.when`, rule.when, 'handler', 'bool'] as const] : []), ...output] as [string, string, CelScope, CelResult][];
          }),
        );
        return manifest.handlers.length === 0 ? skipped('the package has no rule handlers') : ok(`${manifest.handlers.length} rule handlers (${count} expressions) run while installed`);
      },
    },
    {
      id: 'webhook',
      async run() {
        if (!manifest.webhook) return skipped('the package receives no webhooks');
        const scope: CelScope = manifest.webhook.scheme === 'google-pubsub' ? 'webhook-pubsub' : 'webhook';
        const { event } = manifest.webhook;
        compileAll(Object.entries(event).map(([field, expression]) => [`webhook.event.${field}`, expression as string, scope, 'any']));
        return ok(`${manifest.webhook.scheme} deliveries at /v1/hooks/${row.id} while installed`);
      },
    },
    {
      id: 'schemas',
      async run() {
        for (const signal of manifest.signals) {
          const compiled = compileJsonSchema(signal.payload);
          if (!compiled.ok) throw new DomainError('validation_failed', `the payload schema of ${signal.type} does not compile: ${compiled.message}`);
        }
        return manifest.signals.length === 0 ? skipped('the package declares no signal types') : ok(`${manifest.signals.map((s) => s.type).join(', ')} checked at emit while installed`);
      },
    },
    {
      id: 'projections',
      async run() {
        compileAll(manifest.projections.flatMap((projection, i) => [[`projections.${i}.key`, projection.key, 'projection', 'string'], ...celFields(`projections.${i}.fields`, projection.fields, 'projection')] as [string, string, CelScope, CelResult][]));
        return manifest.projections.length === 0 ? skipped('the package projects no entities') : ok(`${manifest.projections.map((p) => p.type).join(', ')}`);
      },
    },
  ];
}

const programOf = (where: string, expression: string, result: CelResult = 'any') => {
  const compiled = compileManifestCel(expression, 'step', result);
  if (!compiled.ok) throw new DomainError('validation_failed', `${where}: ${compiled.message}`);
  return compiled.program;
};

/**
 * A declared step: its outputs are keyed by (installation, version, step,
 * local key), so a retried install proposes or emits nothing twice.
 */
function declaredStep(deps: InstallationDeps, ctx: VerbContext, row: InstallationRow, manifest: Manifest, step: InstallStep, index: number): StepPlan {
  const where = `steps.${index}`;
  return {
    id: `step:${step.id}`,
    async run(tx) {
      const variables = { config: toCel(row.config), installation: toCel({ id: row.id, package: manifest.name, version: manifest.version }) };
      if (step.when && programOf(`${where}.when`, step.when, 'bool')(variables) !== true) return skipped('its condition is false');
      const output = step.propose ?? step.emit!;
      const local = output.key ? String(programOf(`${where}.key`, output.key, 'string')(variables)) : step.id;
      const key = `installation:${row.id}:${manifest.version}:${step.id}:${local}`;
      const stepCtx: VerbContext = { ...ctx, actor: { type: 'integration', id: manifest.name }, installationId: row.id, tx };
      if (step.propose) {
        const programs = Object.fromEntries(Object.entries(step.propose.params).map(([field, text]) => [field, programOf(`${where}.propose.params.${field}`, text)]));
        const params = evaluateFields(programs, variables, `${where}.propose.params`);
        const { directive } = await proposeDirective(deps.directives, { ctx: stepCtx, input: { kind: step.propose.kind, params, idempotency_key: key }, read: false });
        return ok(`proposed ${step.propose.kind} as ${directive.id}`);
      }
      const programs = Object.fromEntries(Object.entries(step.emit!.payload).map(([field, text]) => [field, programOf(`${where}.emit.payload.${field}`, text)]));
      const payload = evaluateFields(programs, variables, `${where}.emit.payload`);
      const subject = step.emit!.subject ? String(programOf(`${where}.emit.subject`, step.emit!.subject, 'string')(variables)) : null;
      const { signal } = await emit(deps.emit, { ctx: stepCtx, input: { type: step.emit!.type, subject, payload, dedupe_key: key } });
      return ok(`emitted ${signal.type} as ${signal.id}`);
    },
  };
}

/** The steps of `operation` for `row`, towards `manifest` (absent for an uninstall). */
export function planSteps(deps: InstallationDeps, ctx: VerbContext, operation: InstallationOperation, row: InstallationRow, manifest: Manifest): StepPlan[] {
  if (operation === 'uninstall') {
    return [
      { id: 'handlers', run: async () => ok('its rule handlers, payload schemas, policies and webhook stop with the uninstall') },
      {
        id: 'secrets',
        async run(tx) {
          const removed = await tx.sql`delete from ${tx.sql(`${ctx.tenant.schema}.secrets`)} where owner = ${row.id}`;
          return ok(`${removed.count} removed from the vault`);
        },
      },
    ];
  }
  // An upgrade's steps see the config it applies: the new one when it brought one.
  const upgraded = { ...row, version: manifest.version, config: (operation === 'upgrade' && row.pending?.config) || row.config };
  return [
    ...platformSteps(deps, ctx, upgraded, manifest),
    ...manifest.steps.map((step, i) => declaredStep(deps, ctx, upgraded, manifest, step, i)),
    // The outcome signal follows in this transaction: the package is live from its commit on.
    { id: 'activate', run: async () => ok(`${manifest.name}@${manifest.version} is live once this commits`) },
  ];
}

/**
 * Runs `steps` in order, recording each in `report` as it finishes (the
 * report survives the rollback a failure causes). Throws the failing step's
 * error, with the step's id.
 */
export async function runSteps(deps: InstallationDeps, tx: Tx, row: InstallationRow, steps: StepPlan[], report: InstallationStep[]): Promise<void> {
  for (const step of steps) {
    try {
      await deps.beforeStep?.(step.id, row);
      report.push({ id: step.id, ...(await step.run(tx)) });
    } catch (error) {
      report.push({ id: step.id, status: 'failed', detail: safeMessage(error) });
      throw new StepFailed(step.id, error);
    }
  }
}

/** A domain error's message is safe to show; anything else (SQL, a bug) is reported without its text. */
export function safeMessage(error: unknown): string {
  return error instanceof DomainError ? error.message : 'the step failed unexpectedly; the worker log has the details';
}

export class StepFailed extends Error {
  constructor(
    readonly step: string,
    readonly reason: unknown,
  ) {
    super(`step ${step} failed`);
  }
}
