/**
 * A worker that keeps dying does not use up the jobs it merely held. The
 * directive runner fetches a batch of execute jobs ahead, and graphile-worker
 * counts an attempt at each fetch: thirty deaths of workers holding the same
 * three jobs would leave them dead at 25 attempts, never run, their
 * directives approved for good. The sweep gives those attempts back and
 * marks each job released; the directives then run once each, claimed.
 */
import { randomBytes } from 'node:crypto';
import { Pool } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { getDirective } from '../../src/directives/store.ts';
import { putSecret } from '../../src/secrets/vault.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { startLiveness, type Liveness } from '../../src/worker/liveness.ts';
import { startWebhookSink, type WebhookSink } from '../fakes/webhook-sink.ts';
import { proposeApproved } from '../support/directives.ts';
import { setPolicy } from '../support/fanout.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

const DEATHS = 30;
const WEBHOOK_SECRET = `whsec_${randomBytes(24).toString('base64')}`;

let t: TestApp;
let org: Tenant;
let sink: WebhookSink;
let pgPool: Pool;
let liveness: Liveness;

beforeAll(async () => {
  sink = await startWebhookSink({ secret: WEBHOOK_SECRET });
  t = await createTestApp({ env: { SIGNALBUS_ALLOW_PRIVATE_TARGETS: 'true' } });
  org = await t.createOrg('released_jobs');
  await setPolicy(t, org, { rules: [{ id: 'allow-all', match: '*', effect: 'allow' }] });
  await putSecret(t.app.deps.vault, { tenant: org, name: 'webhook_signing_secret', input: { value: WEBHOOK_SECRET } });
  pgPool = new Pool({ connectionString: t.database.url, max: 2 });
  // A sweeper with no workers of its own, as in a process whose workers are elsewhere.
  liveness = await startLiveness({ sql: t.app.deps.sql, pgPool, logger: t.app.deps.logger, processId: 'sweeper', workerIds: () => [], heartbeatMs: 60_000, staleAfterMs: 1000 });
});

afterAll(async () => {
  await liveness?.stop();
  await pgPool?.end();
  await t?.close();
  await sink?.close();
});

const executeJobs = () =>
  t.app.deps.sql<{ attempts: number; max_attempts: number; released: number | null; locked_by: string | null }[]>`
    select j.attempts, j.max_attempts, (j.payload::jsonb ->> 'released')::int as released, j.locked_by
      from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
     where t.identifier = 'execute_directive'`;

describe('jobs held by workers that died', () => {
  it(`survive ${DEATHS} deaths of workers that fetched them, and then run once each`, async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const proposed = await proposeApproved(t, { tenant: org, actor: PLATFORM_ACTOR }, { kind: 'webhook.post', params: { url: `${sink.url}/hooks/released`, body: { n: i } }, idempotency_key: `released-${i}` });
      ids.push(proposed.id);
    }
    for (let death = 1; death <= DEATHS; death++) {
      // What a fetch does, by a worker that then dies without a heartbeat.
      await t.app.deps.sql`
        update graphile_worker._private_jobs j
           set attempts = j.attempts + 1, locked_by = ${`dead-${death}`}, locked_at = now() - interval '1 hour'
          from graphile_worker._private_tasks t
         where t.id = j.task_id and t.identifier = 'execute_directive'`;
      expect(await liveness.sweep()).toEqual([`dead-${death}`]);
    }
    const jobs = await executeJobs();
    expect(jobs).toHaveLength(3);
    for (const job of jobs) expect(job).toEqual({ attempts: 0, max_attempts: 25, released: DEATHS, locked_by: null });

    await t.startWorker();
    await waitFor(async () => {
      const rows = await Promise.all(ids.map((id) => getDirective(t.app.deps.sql, org, id)));
      return rows.every((row) => row.status === 'succeeded');
    }, 30_000, 'the released directives to run');
    for (const id of ids) {
      // Claimed, as after any release: one attempt, counted.
      expect(await getDirective(t.app.deps.sql, org, id)).toMatchObject({ status: 'succeeded', attempts: 1 });
      expect(sink.deliveries.filter((delivery) => delivery.webhookId === id)).toHaveLength(1);
    }
  });
});
