/**
 * The console's signals page filtered by recording time: a `since` bound
 * starts the walk at the first position holding a signal recorded since then
 * (found through the recording times' index), and must still list exactly
 * the signals in the window, page after page, alone or with other filters.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signedIn, type ConsoleClient } from '../support/console.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

let t: TestApp;
let key: string;
let since: string;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function emitBatch(type: string, count: number) {
  const signals = Array.from({ length: count }, (_, n) => ({ type, subject: `s:${n % 3}`, payload: { n } }));
  const response = await t.request('POST', '/v1/orgs/acme/signals/batch', { key, body: { signals } });
  expect(response.status).toBeLessThan(300);
}

/** Every signal a filtered listing shows, following its next-page links; the number of pages. */
async function listAll(client: ConsoleClient, query: string): Promise<{ types: string[]; pages: number }> {
  const types: string[] = [];
  let path: string | undefined = `/console/orgs/acme/signals?${query}`;
  let pages = 0;
  while (path) {
    const page = await client.get(path);
    expect(page.status).toBe(200);
    pages++;
    for (const match of page.text.matchAll(/href="\/console\/orgs\/acme\/signals\/sig_[^"]+">([^<]+)</g)) types.push(match[1]!);
    path = /href="([^"]+)" rel="next"/.exec(page.text)?.[1]?.replaceAll('&amp;', '&');
  }
  return { types, pages };
}

beforeAll(async () => {
  t = await createTestApp();
  const acme = await t.createOrg('acme');
  key = await t.createKey(acme, 'operator');
  await emitBatch('old.thing', 5);
  await sleep(50);
  since = new Date().toISOString();
  await sleep(50);
  await emitBatch('new.thing', 55);
  await emitBatch('other.thing', 1);
  // The log lists what is below the visibility horizon: let open transactions end.
  await t.settle();
});
afterAll(async () => {
  await t?.close();
});

describe('console signals page by recording time', () => {
  it('lists exactly the signals recorded since a time, over two pages', async () => {
    const client = await signedIn(t, key);
    const { types, pages } = await listAll(client, `since=${encodeURIComponent(since)}`);
    expect(pages).toBe(2);
    expect(types.filter((type) => type === 'new.thing')).toHaveLength(55);
    expect(types.filter((type) => type === 'other.thing')).toHaveLength(1);
    expect(types).not.toContain('old.thing');
  });

  it('combines since with a type glob and a subject', async () => {
    const client = await signedIn(t, key);
    expect((await listAll(client, `since=${encodeURIComponent(since)}&type=new.*`)).types).toEqual(Array(55).fill('new.thing'));
    expect((await listAll(client, `since=${encodeURIComponent(since)}&type=old.*`)).types).toEqual([]);
    expect((await listAll(client, `since=${encodeURIComponent(since)}&subject=s:1`)).types).toHaveLength(18);
  });

  it('lists what came before a time, and nothing since a time still to come', async () => {
    const client = await signedIn(t, key);
    expect((await listAll(client, `before=${encodeURIComponent(since)}`)).types.filter((type) => type.endsWith('.thing'))).toEqual(Array(5).fill('old.thing'));
    const future = await client.get(`/console/orgs/acme/signals?since=${encodeURIComponent(new Date(Date.now() + 3_600_000).toISOString())}`);
    expect(future.text).toContain('No signals match.');
    expect(future.text).not.toContain('rel="next"');
  });
});
