/** Requesting replays as a role and waiting for them to end, for the replay suites. */
import type { Role } from '../../src/auth/roles.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import type { Actor } from '../../src/signals/actor.ts';
import { requestReplay, showReplay } from '../../src/replay/verbs.ts';
import type { Replay } from '../../src/replay/store.ts';
import { waitFor, type TestApp } from '../support/harness.ts';

export const SUPPORT: Actor = { type: 'human', id: 'sam@support.test' };

export const ctxOf = (tenant: Tenant, actor: Actor = SUPPORT) => ({ tenant, actor, source: 'api' });

export function request(t: TestApp, tenant: Tenant, body: Record<string, unknown>, role: Role = 'support'): Promise<Replay> {
  return requestReplay(t.app.deps.bus.replays, { ctx: ctxOf(tenant), input: { role, request: { reason: 'INC-1: test', ...body } } });
}

export async function untilEnded(t: TestApp, tenant: Tenant, id: string, timeoutMs = 60_000): Promise<Replay> {
  return waitFor(async () => {
    const replay = await showReplay(t.app.deps.bus.replays, { ctx: ctxOf(tenant), input: { id } });
    return replay.status === 'queued' || replay.status === 'running' ? undefined : replay;
  }, timeoutMs, `replay ${id} to end`);
}

export async function schemaExists(t: TestApp, schema: string): Promise<boolean> {
  const [row] = await t.app.deps.sql<{ found: boolean }[]>`select exists (select 1 from pg_namespace where nspname = ${schema}) as found`;
  return row!.found;
}
