/**
 * Every /v1 operation. A route registered anywhere else would miss the access
 * table test; add new operations here.
 */
import type { ApiApp } from '../context.ts';
import { registerCreateApiKey } from './api-keys/create.ts';
import { registerRevokeApiKey } from './api-keys/revoke.ts';
import { registerApproveDirective } from './directives/approve.ts';
import { registerCancelDirective } from './directives/cancel.ts';
import { registerGetDirective } from './directives/get.ts';
import { registerListDirectives } from './directives/list.ts';
import { registerProposeDirective } from './directives/propose.ts';
import { registerRejectDirective } from './directives/reject.ts';
import { registerSimulateDirective } from './directives/simulate.ts';
import { registerGetExecution } from './executions/get.ts';
import { registerListExecutions } from './executions/list.ts';
import { registerRetryExecution } from './executions/retry.ts';
import { registerInstallationActions } from './installations/actions.ts';
import { registerConfigureInstallation, registerUpgradeInstallation } from './installations/configure.ts';
import { registerInstallPackage } from './installations/create.ts';
import { registerGetInstallation } from './installations/get.ts';
import { registerListInstallations } from './installations/list.ts';
import { registerCreateOrg } from './orgs/create.ts';
import { registerGetPackage } from './packages/get.ts';
import { registerGetPackageVersion } from './packages/get-version.ts';
import { registerListPackages } from './packages/list.ts';
import { registerGetPolicy } from './policies/get.ts';
import { registerUpdatePolicy } from './policies/update.ts';
import { registerDeleteSecret } from './secrets/delete.ts';
import { registerListSecrets } from './secrets/list.ts';
import { registerPutSecret } from './secrets/put.ts';
import { registerEmitBatch } from './signals/emit-batch.ts';
import { registerEmitSignal } from './signals/emit.ts';
import { registerGetSignal } from './signals/get.ts';
import { registerListSignals } from './signals/list.ts';
import { registerTraceSignal } from './signals/trace.ts';
import { registerStream } from './stream/subscribe.ts';

export function registerOperations(app: ApiApp): void {
  registerCreateOrg(app);
  registerCreateApiKey(app);
  registerRevokeApiKey(app);
  registerEmitSignal(app);
  registerEmitBatch(app);
  registerListSignals(app);
  registerGetSignal(app);
  registerTraceSignal(app);
  registerStream(app);
  registerProposeDirective(app);
  registerSimulateDirective(app);
  registerListDirectives(app);
  registerGetDirective(app);
  registerApproveDirective(app);
  registerRejectDirective(app);
  registerCancelDirective(app);
  registerListExecutions(app);
  registerGetExecution(app);
  registerRetryExecution(app);
  registerGetPolicy(app);
  registerUpdatePolicy(app);
  registerPutSecret(app);
  registerListSecrets(app);
  registerDeleteSecret(app);
  registerListPackages(app);
  registerGetPackage(app);
  registerGetPackageVersion(app);
  registerInstallPackage(app);
  registerListInstallations(app);
  registerGetInstallation(app);
  registerConfigureInstallation(app);
  registerUpgradeInstallation(app);
  registerInstallationActions(app);
}
