/**
 * Moving an org: export its log to NDJSON, import it into a fresh database.
 * The round trip keeps every signal (ids, keys, actors, timestamps, order)
 * and rebuilds projections equal by checksum; handlers do not run the
 * imported history again. A file with a flipped byte, a lost trailer or a
 * cut is refused before anything is written. An import interrupted midway
 * leaves no live org; run again, it resumes (or, for another file, starts over).
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DomainError } from '../../src/core/errors.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createDispatcher } from '../../src/handlers/dispatcher.ts';
import type { Handler } from '../../src/handlers/registry.ts';
import { checksumProjections } from '../../src/projections/rebuild.ts';
import { putSecret } from '../../src/secrets/vault.ts';
import { emit } from '../../src/signals/emit.ts';
import { exportOrg } from '../../src/tenancy/export.ts';
import { discardImport, importOrg } from '../../src/tenancy/import.ts';
import { fileLines } from '../../src/tenancy/org-file.ts';
import { setPolicy } from '../support/fanout.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { installationIn } from '../support/installations.ts';

const follower: Handler = {
  id: 'test.follower',
  on: ['shop.order.*'],
  start: 'beginning',
  handle(signal, tools) {
    tools.emit({ type: 'shop.followed', subject: signal.subject, payload: { of: signal.id, n: 1.10000000000000000001 }, key: 'followed' });
    tools.propose({ kind: 'noop.record', params: { order: signal.id }, key: 'record' });
  },
};

const ACTOR = { type: 'human' as const, id: 'ana@move.test', display: 'Ana' };
let source: TestApp;
let target: TestApp;
let org: Tenant;
let dir: string;
let file: string;
let installationId: string;

async function exportTo(app: TestApp, tenant: Tenant, to: string) {
  const out = createWriteStream(to);
  const summary = await exportOrg(app.app.deps, {
    ctx: { tenant, actor: ACTOR, source: 'cli' },
    input: {
      pageSize: 7,
      write: async (chunk) => {
        if (!out.write(chunk)) await once(out, 'drain');
      },
    },
  });
  out.end();
  await once(out, 'finish');
  return summary;
}

const importFile = (app: TestApp, from: string, as?: string) =>
  importOrg(app.app.deps, { ctx: { actor: ACTOR, source: 'cli' }, input: { lines: () => fileLines(from), pageSize: 5, ...(as ? { as } : {}) } });

async function signalsOf(app: TestApp, tenant: Tenant) {
  const sql = app.app.deps.sql;
  return sql`
    select id, type, schema_version, subject, payload::text as payload, actor, source, dedupe_key, payload_hash, request_hash,
           correlation_id, causation_id, causation_depth, installation_id, trace, occurred_at, recorded_at
      from ${sql(`${tenant.schema}.signals`)} where type <> 'org.imported' order by tx_id, seq`;
}

async function everything(app: TestApp) {
  const sql = app.app.deps.sql;
  const [row] = await sql<{ orgs: number; schemas: number }[]>`
    select (select count(*)::int from public.organizations) as orgs,
           (select count(*)::int from pg_namespace where nspname like 'org\\_%') as schemas`;
  return row!;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'signalbus-export-'));
  file = path.join(dir, 'org.ndjson');
  source = await createTestApp({ handlers: [follower] });
  org = await source.createOrg('moving', 'Moving Co');
  await setPolicy(source, org, { rules: [{ id: 'allow-noop', match: 'noop.*', effect: 'allow' }] });
  await putSecret(source.app.deps.vault, { tenant: org, name: 'stripe_api_key', input: { value: 'sk_test_never_exported' } });
  // An installation: its hook route must come along (its secrets would not: this one has none).
  installationId = await installationIn(source, org, 'install_failed');
  await source.startWorker({ pollIntervalMs: 50 });
  for (let i = 0; i < 12; i++) {
    await emit(source.app.deps.bus.emit, {
      ctx: { tenant: org, actor: ACTOR, source: 'api' },
      input: { type: 'shop.order.placed', subject: `order:${i % 3}`, payload: { i, amount: 12.5, big: 12345678901234567890.5 }, dedupe_key: `order-${i}` },
    });
  }
  // Every order handled, every directive executed: the log is quiet.
  const sql = source.app.deps.sql;
  await waitFor(async () => {
    const [row] = await sql<{ done: number }[]>`
      select count(*)::int as done from org_moving.directives where status = 'succeeded'`;
    return row!.done === 12;
  }, 30_000, 'the orders to be handled and executed');
  await source.settle();
  await exportTo(source, org, file);
  target = await createTestApp({ handlers: [follower] });
  await target.startWorker({ pollIntervalMs: 50 });
}, 90_000);

afterAll(async () => {
  await source?.close();
  await target?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('orgs export', () => {
  it('writes a header with the org, its source, positions and secret names (no values), the signals, and a trailer', async () => {
    const lines = (await readFile(file, 'utf8')).trimEnd().split('\n');
    const header = JSON.parse(lines[0]!);
    const trailer = JSON.parse(lines[lines.length - 1]!);
    expect(header).toMatchObject({ format: 'signalbus.org-export', version: 1, org: { id: org.id, slug: 'moving', name: 'Moving Co' } });
    expect(header.source.database).toBe(source.database.name);
    expect(header.secrets).toEqual([{ owner: 'org', name: 'stripe_api_key' }]);
    expect(lines.join('\n')).not.toContain('sk_test_never_exported');
    expect(trailer.count).toBe(lines.length - 2);
    const [count] = await source.app.deps.sql<{ n: number }[]>`select count(*)::int as n from org_moving.signals`;
    expect(trailer.count).toBe(count!.n);
    expect(JSON.parse(lines[1]!).position).toBe(header.positions.first);
    expect(JSON.parse(lines[lines.length - 2]!).position).toBe(header.positions.last);
  });
});

describe('orgs import into a fresh database', () => {
  it('recreates the org with the same signals and projections equal by checksum, and lists the secrets to re-enter', async () => {
    const report = await importFile(target, file);
    expect(report.org).toMatchObject({ id: org.id, slug: 'moving', name: 'Moving Co' });
    expect(report.secrets_to_reenter).toEqual([{ owner: 'org', name: 'stripe_api_key' }]);
    const imported = (await target.app.deps.tenants.find('moving'))!;
    const projections = source.app.deps.projections.projections;
    const before = await checksumProjections(source.app.deps.sql, org, projections);
    expect(before.directives!.rows).toBe(12);
    expect(await checksumProjections(target.app.deps.sql, imported, projections)).toEqual(before);
    expect(report.checksums).toEqual(before);
    // Same rows, same order; exact numbers and microseconds kept.
    expect(await signalsOf(target, imported)).toEqual(await signalsOf(source, org));
    const [route] = await target.app.deps.sql`select org_id from public.installation_routes where installation_id = ${installationId}`;
    expect(route?.org_id).toBe(imported.id);
    // No vault entry came along.
    const [secrets] = await target.app.deps.sql<{ n: number }[]>`select count(*)::int as n from org_moving.secrets`;
    expect(secrets!.n).toBe(0);
  });

  it('does not run handlers over the imported history', async () => {
    const sql = target.app.deps.sql;
    await waitFor(async () => {
      const [row] = await sql<{ n: number }[]>`select count(*)::int as n from org_moving.subscriptions`;
      return row!.n === 1;
    }, 20_000, 'the dispatcher to subscribe the imported org');
    const [sub] = await sql<{ at_import: boolean }[]>`
      select (s.tx_id, s.seq) = (i.tx_id, i.seq) as at_import
        from org_moving.subscriptions s, org_moving.signals i where i.type = 'org.imported'`;
    expect(sub!.at_import).toBe(true);
    // A new order after the import is handled as usual.
    const tenant = (await target.app.deps.tenants.find('moving'))!;
    await setPolicy(target, tenant, { rules: [{ id: 'allow-noop', match: 'noop.*', effect: 'allow' }] });
    await emit(target.app.deps.bus.emit, {
      ctx: { tenant, actor: ACTOR, source: 'api' },
      input: { type: 'shop.order.placed', subject: 'order:new', payload: { i: 99 } },
    });
    await waitFor(async () => {
      const [row] = await sql<{ n: number }[]>`select count(*)::int as n from org_moving.directives where status = 'succeeded'`;
      return row!.n === 13;
    }, 20_000, 'the new order to be handled');
    const [executions] = await sql<{ n: number }[]>`select count(*)::int as n from org_moving.executions where handler = 'test.follower'`;
    expect(executions!.n).toBe(13);
  });

  it('imports again under another slug, with a new id when the old one is taken', async () => {
    const report = await importFile(target, file, 'moved_twice');
    expect(report.org.slug).toBe('moved_twice');
    expect(report.org.id).not.toBe(org.id);
    expect(report.signals).toBe(JSON.parse((await readFile(file, 'utf8')).trimEnd().split('\n').at(-1)!).count);
  });

  it('refuses a slug that exists here', async () => {
    await expect(importFile(target, file, 'moving')).rejects.toMatchObject({ code: 'conflict' });
  });
});

describe('a damaged file', () => {
  const damaged = async (name: string, change: (text: string) => string) => {
    const to = path.join(dir, name);
    await writeFile(to, change(await readFile(file, 'utf8')));
    return to;
  };

  const refusedWithNothingWritten = async (to: string, message: RegExp) => {
    const before = await everything(target);
    const error = await importFile(target, to, 'damaged').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).message).toMatch(message);
    expect(await everything(target)).toEqual(before);
    expect(await target.app.deps.tenants.find('damaged')).toBeUndefined();
  };

  it('with one flipped byte is refused, nothing written', async () => {
    const to = await damaged('flipped.ndjson', (text) => {
      const at = text.indexOf('"amount": 12.5');
      return `${text.slice(0, at + 11)}3${text.slice(at + 12)}`;
    });
    expect((await readFile(to, 'utf8')).length).toBe((await readFile(file, 'utf8')).length);
    await refusedWithNothingWritten(to, /sha256 does not match/);
  });

  it('without its trailer is refused, nothing written', async () => {
    const to = await damaged('no-trailer.ndjson', (text) => text.trimEnd().split('\n').slice(0, -1).join('\n') + '\n');
    await refusedWithNothingWritten(to, /trailer is missing/);
  });

  it('cut in the middle of a line is refused, nothing written', async () => {
    const to = await damaged('cut.ndjson', (text) => text.slice(0, Math.floor(text.length / 2)));
    await refusedWithNothingWritten(to, /trailer is missing|not JSON/);
  });

  it('with a line lost is refused, nothing written', async () => {
    const to = await damaged('lost-line.ndjson', (text) => {
      const lines = text.trimEnd().split('\n');
      lines.splice(3, 1);
      return `${lines.join('\n')}\n`;
    });
    await refusedWithNothingWritten(to, /counts \d+ signals, the file holds/);
  });
});

describe('an import interrupted midway', () => {
  /** The file's lines; on the write pass (the second call) the read fails after `lines` lines. */
  const failingAfter = (from: string, lines: number) => {
    let calls = 0;
    return async function* () {
      const pass = ++calls;
      let n = 0;
      for await (const line of fileLines(from)) {
        if (pass > 1 && n++ >= lines) throw new Error('the disk went away');
        yield line;
      }
    };
  };
  const importWith = (input: Partial<Parameters<typeof importOrg>[1]['input']> & { lines: () => AsyncIterable<string>; as: string }) =>
    importOrg(target.app.deps, { ctx: { actor: ACTOR, source: 'cli' }, input: { pageSize: 5, ...input } });
  const unfinished = async (slug: string) => {
    const [row] = await target.app.deps.sql<{ status: string; written: number }[]>`
      select o.status, i.written from public.organizations o left join public.org_imports i on i.org_id = o.id where o.slug = ${slug}`;
    return row;
  };

  it('leaves an org nobody sees; the same import again resumes after the last page and ends equal to the source', async () => {
    // Header and 12 signal lines read: two pages of 5 committed, the third lost.
    await expect(importWith({ lines: failingAfter(file, 13), as: 'resumed' })).rejects.toThrow('the disk went away');
    expect(await unfinished('resumed')).toEqual({ status: 'importing', written: 10 });
    expect(await target.app.deps.tenants.find('resumed')).toBeUndefined();
    await expect(target.createOrg('resumed', 'Moving Co')).rejects.toMatchObject({ code: 'conflict' });
    // Fan-out leaves it alone too: a dispatcher's start runs every org its sweep
    // finds behind (with the worker's live wake-ups, this file's follower would
    // subscribe from the beginning), yet the unfinished org gets no subscription.
    const dispatcher = createDispatcher({ sql: target.app.deps.sql, handlers: target.app.deps.bus.handlers, tenants: target.app.deps.tenants, notifier: target.app.deps.notifier, logger: target.app.deps.logger });
    await dispatcher.start();
    await dispatcher.stop();
    const [subscribed] = await target.app.deps.sql<{ n: number }[]>`select count(*)::int as n from org_resumed.subscriptions`;
    expect(subscribed!.n).toBe(0);

    const report = await importWith({ lines: () => fileLines(file), as: 'resumed' });
    expect(report.resumed_after).toBe(10);
    const resumed = (await target.app.deps.tenants.find('resumed'))!;
    const expected = await checksumProjections(source.app.deps.sql, org, source.app.deps.projections.projections);
    expect(await checksumProjections(target.app.deps.sql, resumed, source.app.deps.projections.projections)).toEqual(expected);
    expect(report.checksums).toEqual(expected);
    expect(await signalsOf(target, resumed)).toEqual(await signalsOf(source, org));
    // A page per transaction: the history spans several, in file order.
    const [pages] = await target.app.deps.sql<{ n: number }[]>`select count(distinct tx_id)::int as n from org_resumed.signals where type <> 'org.imported'`;
    expect(pages!.n).toBe(Math.ceil(report.signals / 5));
    expect(await unfinished('resumed')).toEqual({ status: 'active', written: null });
  });

  it('starts over when another file is imported under the unfinished slug', async () => {
    await expect(importWith({ lines: failingAfter(file, 8), as: 'restarted' })).rejects.toThrow('the disk went away');
    expect(await unfinished('restarted')).toEqual({ status: 'importing', written: 5 });
    // Another file: the imported org exported again (its history and `org.imported`).
    const other = path.join(dir, 'other.ndjson');
    const { trailer } = await exportTo(target, (await target.app.deps.tenants.find('moving'))!, other);
    const report = await importWith({ lines: () => fileLines(other), as: 'restarted' });
    expect(report).toMatchObject({ resumed_after: 0, signals: trailer.count, sha256: trailer.sha256 });
    // The file's lines and this import's own `org.imported`: nothing of the abandoned run.
    const [count] = await target.app.deps.sql<{ n: number }[]>`select count(*)::int as n from org_restarted.signals`;
    expect(count!.n).toBe(trailer.count + 1);
  });

  it('is removed by discardImport, which refuses a live org', async () => {
    await expect(importWith({ lines: failingAfter(file, 8), as: 'dropped' })).rejects.toThrow('the disk went away');
    expect(await discardImport(target.app.deps, 'dropped')).toBe(true);
    expect(await unfinished('dropped')).toBeUndefined();
    const [schema] = await target.app.deps.sql`select 1 from pg_namespace where nspname = 'org_dropped'`;
    expect(schema).toBeUndefined();
    expect(await discardImport(target.app.deps, 'dropped')).toBe(false);
    await expect(discardImport(target.app.deps, 'moving')).rejects.toMatchObject({ code: 'conflict' });
  });

  it('refuses a second import into a slug while one runs', async () => {
    const first = importWith({ lines: () => fileLines(file), as: 'locked', pageDelayMs: 100 });
    await waitFor(async () => ((await unfinished('locked'))?.written ?? 0) > 0, 20_000, 'the first import to write a page');
    await expect(importWith({ lines: () => fileLines(file), as: 'locked' })).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/running/) });
    await expect(discardImport(target.app.deps, 'locked')).rejects.toMatchObject({ code: 'conflict' });
    expect((await first).org.slug).toBe('locked');
  });
});
