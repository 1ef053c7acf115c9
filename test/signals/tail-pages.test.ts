/**
 * A live tail's read (`readTailPage`): its page is what `readSignalPage`
 * gives (after the cursor, cut by count or bytes), an org without new rows
 * still answers, and rows committed above the horizon are reported as held
 * back, from the same snapshot as the read.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSql } from '../../src/db/client.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { BEGINNING, decodeCursor } from '../../src/signals/model.ts';
import { readSignalPage, readTailPage } from '../../src/signals/read.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

let t: TestApp;
let big: Tenant;
let small: Tenant;
let quiet: Tenant;
const keys = new Map<Tenant, string>();

beforeAll(async () => {
  t = await createTestApp();
  [big, small, quiet] = await Promise.all([t.createOrg('tailbig'), t.createOrg('tailsmall'), t.createOrg('tailquiet')]);
  for (const org of [big, small, quiet]) keys.set(org, await t.createKey(org, 'operator'));
});
afterAll(async () => {
  await t?.close();
});

async function post(org: Tenant, padding = ''): Promise<string> {
  const response = await t.request('POST', `/v1/orgs/${org.slug}/signals`, { key: keys.get(org)!, body: { type: 'tail.tick', payload: { padding } } });
  expect(response.status).toBe(201);
  return response.body.signal.position as string;
}

const positions = (rows: Array<{ position: string }>) => rows.map((row) => row.position);

/** The end of the org's log so far (its creation signals included). */
async function endOf(org: Tenant) {
  await t.settle();
  const { rows } = await readSignalPage(t.app.deps.sql, org, BEGINNING, { limit: 1_000, maxBytes: 1 << 24 });
  return rows.length > 0 ? decodeCursor(rows[rows.length - 1]!.position) : BEGINNING;
}

describe('readTailPage', () => {
  it('reads after the cursor, cut as readSignalPage cuts it', async () => {
    const [bigStart, quietStart] = [await endOf(big), await endOf(quiet)];
    const bigPositions = [await post(big, 'x'.repeat(3_000)), await post(big, 'x'.repeat(3_000)), await post(big, 'x'.repeat(3_000))];
    const smallPositions = [await post(small), await post(small), await post(small)];
    await t.settle();
    const sql = t.app.deps.sql;
    const options = { limit: 10, maxBytes: 5_000 };
    const reads = [
      { tenant: big, after: bigStart },
      { tenant: small, after: decodeCursor(smallPositions[0]!) },
      { tenant: quiet, after: quietStart },
    ];
    const [bigPage, smallPage, quietPage] = await Promise.all(reads.map((read) => readTailPage(sql, read.tenant, read.after, options)));
    // Cut by bytes: the first 3 KB payload fits, the second would pass 5 KB.
    expect(positions(bigPage!.rows)).toEqual(bigPositions.slice(0, 1));
    expect(bigPage!.more).toBe(true);
    expect(positions(smallPage!.rows)).toEqual(smallPositions.slice(1));
    expect(smallPage!.more).toBe(false);
    expect(quietPage).toMatchObject({ rows: [], more: false });
    for (const [index, read] of reads.entries()) {
      const alone = await readSignalPage(sql, read.tenant, read.after, options);
      expect([positions(alone.rows), alone.more]).toEqual([positions([bigPage!, smallPage!, quietPage!][index]!.rows), [bigPage!, smallPage!, quietPage!][index]!.more]);
    }
    const cut = await readTailPage(sql, small, decodeCursor(smallPositions[0]!), { limit: 1, maxBytes: 5_000 });
    expect(positions(cut!.rows)).toEqual(smallPositions.slice(1, 2));
    expect(cut!.more).toBe(true);
  });

  it('reports rows held above the horizon, and returns them once it passes', async () => {
    const sql = t.app.deps.sql;
    const [head, quietStart] = [await endOf(small), await endOf(quiet)];
    const blocker = createSql(t.database.url, { max: 1, applicationName: 'tail-pages-blocker' });
    try {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let started!: () => void;
      const holding = new Promise<void>((resolve) => (started = resolve));
      const blocking = blocker.begin(async (tx) => {
        await tx`select pg_current_xact_id()`;
        started();
        await released;
      });
      await holding;
      const held = await post(small);
      const reads = [{ tenant: quiet, after: quietStart }, { tenant: small, after: head }];
      const [quietPage, smallPage] = await Promise.all(reads.map((read) => readTailPage(sql, read.tenant, read.after, { limit: 10, maxBytes: 1 << 20 })));
      expect(smallPage).toMatchObject({ rows: [], more: false, heldBack: true });
      expect(quietPage!.heldBack).toBe(false);
      release();
      await blocking;
      const page = await waitFor(async () => {
        const next = await readTailPage(sql, small, head, { limit: 10, maxBytes: 1 << 20 });
        return next!.heldBack ? undefined : next;
      }, 10_000, 'the horizon to pass the held row');
      expect(positions(page.rows)).toEqual([held]);
    } finally {
      await blocker.end({ timeout: 5 });
    }
  });
});
