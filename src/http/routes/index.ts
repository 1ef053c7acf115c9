/**
 * Every /v1 operation. A route registered anywhere else would miss the access
 * table test; add new operations here.
 */
import type { ApiApp } from '../context.ts';
import { registerCreateApiKey } from './api-keys/create.ts';
import { registerRevokeApiKey } from './api-keys/revoke.ts';
import { registerCreateOrg } from './orgs/create.ts';
import { registerEmitBatch } from './signals/emit-batch.ts';
import { registerEmitSignal } from './signals/emit.ts';
import { registerGetSignal } from './signals/get.ts';
import { registerListSignals } from './signals/list.ts';
import { registerStream } from './stream/subscribe.ts';

export function registerOperations(app: ApiApp): void {
  registerCreateOrg(app);
  registerCreateApiKey(app);
  registerRevokeApiKey(app);
  registerEmitSignal(app);
  registerEmitBatch(app);
  registerListSignals(app);
  registerGetSignal(app);
  registerStream(app);
}
