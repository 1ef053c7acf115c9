/**
 * Per-subject order: an ordered handler's runs for one subject happen in the
 * position order of that subject's signals, while several writers interleave
 * subjects and the worker runs several jobs at once.
 */
import { setTimeout as pause } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Handler } from '../../src/handlers/registry.ts';
import { emit } from '../../src/signals/emit.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

const WRITERS = 4;
const PER_WRITER = 50;
const SUBJECTS = 10;
const TOTAL = WRITERS * PER_WRITER;

/** Run starts as the handler saw them, per subject; and how many ran at once. */
const started = new Map<string, string[]>();
let inFlight = 0;
let maxInFlight = 0;

const recorder: Handler = {
  id: 'ordered.recorder',
  on: ['account.step'],
  ordered: true,
  start: 'beginning',
  async handle(signal, tools) {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      const subject = signal.subject!;
      started.set(subject, [...(started.get(subject) ?? []), signal.id]);
      // Jitter, so a run let loose early would visibly overtake its predecessor.
      await pause(Math.random() * 8);
      tools.emit({ type: 'account.step.seen', subject, payload: { of: signal.id }, key: 'seen' });
    } finally {
      inFlight--;
    }
  },
};

let t: TestApp;
let org: Tenant;

beforeAll(async () => {
  t = await createTestApp({ handlers: [recorder] });
  org = await t.createOrg('ordering');
  await t.startWorker({ concurrency: 8 });
});
afterAll(() => t.close());

describe('ordered handlers', () => {
  it('run each subject in position order under parallel load', async () => {
    const sql = t.app.deps.sql;
    await Promise.all(
      Array.from({ length: WRITERS }, async (_, writer) => {
        for (let n = 0; n < PER_WRITER; n++) {
          // Writers walk the subjects from different offsets, so each subject's
          // signals come from every writer, interleaved.
          const subject = `account:${(writer * 3 + n) % SUBJECTS}`;
          await emit(t.app.deps.bus.emit, {
            ctx: { tenant: org, actor: { type: 'integration', id: `writer-${writer}` }, source: 'api' },
            input: { type: 'account.step', subject, payload: { writer, n } },
          });
        }
      }),
    );

    await waitFor(async () => {
      const [row] = await sql<{ seen: number; jobs: number }[]>`
        select (select count(*) from ${sql(`${org.schema}.signals`)} where type = 'account.step.seen')::int as seen,
               (select count(*) from graphile_worker._private_jobs)::int as jobs`;
      return row!.seen >= TOTAL && row!.jobs === 0;
    }, 60_000, 'every step to be seen');

    const steps = await sql<{ id: string; subject: string }[]>`
      select id, subject from ${sql(`${org.schema}.signals`)} where type = 'account.step' order by tx_id, seq`;
    const seen = await sql<{ of: string; subject: string }[]>`
      select payload->>'of' as of, subject from ${sql(`${org.schema}.signals`)}
       where type = 'account.step.seen' order by tx_id, seq`;
    expect(steps).toHaveLength(TOTAL);
    expect(seen).toHaveLength(TOTAL);

    const bySubject = <T extends { subject: string }>(rows: T[], id: (row: T) => string) => {
      const out = new Map<string, string[]>();
      for (const row of rows) out.set(row.subject, [...(out.get(row.subject) ?? []), id(row)]);
      return out;
    };
    const expected = bySubject(steps, (row) => row.id);
    expect(expected.size).toBe(SUBJECTS);
    // Completion order (the runs' own outputs, in commit order) and start order.
    expect(bySubject(seen, (row) => row.of)).toEqual(expected);
    expect(started).toEqual(expected);
    // The load was parallel: several subjects ran at once, so order was not free.
    expect(maxInFlight).toBeGreaterThan(1);
  });
});
