import { copyFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.ts';
import { TENANT_MIGRATIONS_DIR } from '../../src/db/migrate.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { provisionOrg } from '../../src/tenancy/provision.ts';
import {
  loadTenantMigrations,
  migrateAllTenants,
  type TenantMigration,
  type TenantMigrationResult,
} from '../../src/tenancy/tenant-migrations.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

const tempDirs: string[] = [];
afterAll(async () => {
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

/** The shipped tenant migrations, whatever their number today. */
const shipped = await loadTenantMigrations(TENANT_MIGRATIONS_DIR);
const nextVersion = (offset = 1) => String(shipped.length + offset).padStart(4, '0');

/**
 * A tenant migrations dir: a copy of the real `tenants/*.sql` plus `extra`
 * files appended after them, in order.
 */
async function migrationsDir(...extra: Array<{ name: string; sql: string }>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'signalbus-tenants-'));
  tempDirs.push(dir);
  for (const file of await readdir(TENANT_MIGRATIONS_DIR)) {
    if (file.endsWith('.sql')) await copyFile(path.join(TENANT_MIGRATIONS_DIR, file), path.join(dir, file));
  }
  for (const [index, { name, sql }] of extra.entries()) {
    await writeFile(path.join(dir, `${nextVersion(index + 1)}_${name}.sql`), sql);
  }
  return dir;
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

async function count(query: Promise<Array<{ n: number }>>): Promise<number> {
  const [row] = await query;
  return row!.n;
}

/** Everything a slug could have left behind: schema, org row, migration status, tables. */
async function leftovers(t: TestApp, slug: string) {
  const { sql } = t.app.deps;
  const schema = `org_${slug}`;
  return {
    schemata: await count(sql`select count(*)::int as n from information_schema.schemata where schema_name = ${schema}`),
    namespaces: await count(sql`select count(*)::int as n from pg_namespace where nspname = ${schema}`),
    organizations: await count(sql`select count(*)::int as n from public.organizations where slug = ${slug}`),
    tenantMigrations: await count(
      sql`select count(*)::int as n from public.tenant_migrations where schema_name = ${schema}`,
    ),
  };
}

/**
 * Every connection of the app's pool, held at once, answers `search_path`
 * with the database default (read on a fresh connection outside the pool).
 */
async function expectDefaultSearchPathOnEveryPooledConnection(t: TestApp) {
  const fresh = postgres(t.database.url, { max: 1, onnotice: () => {} });
  let expected: string;
  try {
    const [row] = await fresh<{ search_path: string }[]>`show search_path`;
    expected = row!.search_path;
  } finally {
    await fresh.end({ timeout: 5 });
  }
  const { sql } = t.app.deps;
  const poolSize = t.config.SIGNALBUS_DB_POOL_SIZE;
  const reserved = await Promise.all(Array.from({ length: poolSize }, () => sql.reserve()));
  try {
    const seen = await Promise.all(
      reserved.map(async (connection) => {
        const [row] = await connection<{ pid: number; search_path: string }[]>`
          select pg_backend_pid() as pid, current_setting('search_path') as search_path`;
        return row!;
      }),
    );
    expect(new Set(seen.map((row) => row.pid)).size).toBe(poolSize);
    expect(seen.map((row) => row.search_path)).toEqual(Array(poolSize).fill(expected));
    // Unqualified names resolve nowhere near a tenant.
    const [probe] = await reserved[0]!<{ regclass: string | null }[]>`select to_regclass('signals')::text as regclass`;
    expect(probe!.regclass).toBeNull();
  } finally {
    for (const connection of reserved) connection.release();
  }
  // Parallel statements on the pool itself, as request handlers issue them.
  const parallel = await Promise.all(
    Array.from({ length: poolSize * 3 }, async () => (await sql<{ search_path: string }[]>`show search_path`)[0]!.search_path),
  );
  expect(new Set(parallel)).toEqual(new Set([expected]));
}

describe('POST /v1/orgs', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  const create = (body: unknown) => t.request('POST', '/v1/orgs', { key: t.platformKey, body });

  it('creates an org with 201, answers a repeat with 200 and the same org, and a renaming repeat with 409', async () => {
    const first = await create({ slug: 'acme', name: 'Acme Inc' });
    expect(first.status).toBe(201);
    expect(first.body).toEqual({
      org: {
        id: expect.stringMatching(/^org_/),
        slug: 'acme',
        name: 'Acme Inc',
        status: 'active',
        created_at: expect.any(String),
      },
    });
    expect(new Date(first.body.org.created_at).toISOString()).toBe(first.body.org.created_at);

    const again = await create({ slug: 'acme', name: 'Acme Inc' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);

    const renamed = await create({ slug: 'acme', name: 'Acme Corporation' });
    expect(renamed.status).toBe(409);
    expect(renamed.headers.get('content-type')).toContain('application/problem+json');
    expect(renamed.body).toMatchObject({ status: 409, code: 'conflict' });

    const [row] = await t.app.deps.sql`select name from public.organizations where slug = 'acme'`;
    expect(row!.name).toBe('Acme Inc');
    expect(await leftovers(t, 'acme')).toEqual({ schemata: 1, namespaces: 1, organizations: 1, tenantMigrations: 1 });
  });

  it.each([
    ['uppercase', 'Acme'],
    ['leading digit', '1acme'],
    ['too short', 'a'],
    ['hyphen', 'acme-inc'],
    ['too long', `a${'b'.repeat(39)}`],
    ['sql in the slug', 'x"; drop schema public; --'],
    ['empty', ''],
  ])('refuses an invalid slug (%s) with 422 and creates nothing', async (_case, slug) => {
    const response = await create({ slug, name: 'Bad' });
    expect(response.status).toBe(422);
    expect(response.body.code).toBe('validation_failed');
    expect(response.body.errors.map((error: { path: string }) => error.path)).toContain('slug');
    const [row] = await t.app.deps.sql`select count(*)::int as n from public.organizations where name = 'Bad'`;
    expect(row!.n).toBe(0);
  });

  it('refuses a missing or empty name with 422', async () => {
    expect((await create({ slug: 'noname' })).status).toBe(422);
    expect((await create({ slug: 'noname', name: '   ' })).status).toBe(422);
    expect(await leftovers(t, 'noname')).toEqual({ schemata: 0, namespaces: 0, organizations: 0, tenantMigrations: 0 });
  });

  it('requires a platform_admin key', async () => {
    const org = await t.createOrg('keyholder');
    const admin = await t.createKey(org, 'admin');
    const response = await t.request('POST', '/v1/orgs', { key: admin, body: { slug: 'sneaky', name: 'Sneaky' } });
    expect(response.status).toBe(403);
    expect((await t.request('POST', '/v1/orgs', { body: { slug: 'sneaky', name: 'Sneaky' } })).status).toBe(401);
    expect((await leftovers(t, 'sneaky')).organizations).toBe(0);
  });

  it("makes org.created, by the system actor, the org's first signal", async () => {
    const created = await create({ slug: 'firsts', name: 'Firsts Ltd' });
    expect(created.status).toBe(201);
    const org = created.body.org;
    await t.settle();
    const list = await t.request('GET', '/v1/orgs/firsts/signals', { key: t.platformKey });
    expect(list.status).toBe(200);
    expect(list.body.data).toHaveLength(1);
    expect(list.body.data[0]).toMatchObject({
      type: 'org.created',
      subject: `org:${org.id}`,
      actor: { type: 'system', id: 'signalbus' },
      source: 'system',
      payload: { org_id: org.id, slug: 'firsts', name: 'Firsts Ltd' },
    });
    // Repeating the call writes no second org.created.
    expect((await create({ slug: 'firsts', name: 'Firsts Ltd' })).status).toBe(200);
    const [row] = await t.app.deps.sql`select count(*)::int as n from org_firsts.signals`;
    expect(row!.n).toBe(1);
  });

  it('turns 10 concurrent identical calls into one org, one schema and one org.created', async () => {
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => create({ slug: 'racer', name: 'Racer' })),
    );
    for (const response of responses) expect([200, 201]).toContain(response.status);
    expect(responses.filter((response) => response.status === 201)).toHaveLength(1);
    expect(new Set(responses.map((response) => response.body.org.id)).size).toBe(1);
    expect(await leftovers(t, 'racer')).toEqual({ schemata: 1, namespaces: 1, organizations: 1, tenantMigrations: 1 });
    const [row] = await t.app.deps.sql`
      select count(*)::int as n from org_racer.signals where type = 'org.created'`;
    expect(row!.n).toBe(1);
  });
});

describe('a failure mid-provisioning', () => {
  let t: TestApp;
  let fixedDir: string;
  beforeAll(async () => {
    // The extra migration does real work, then fails: provisioning must undo all of it.
    const brokenDir = await migrationsDir({
      name: 'widgets',
      sql: `CREATE TABLE widgets (id bigint PRIMARY KEY, label text NOT NULL);
INSERT INTO widgets VALUES (1, 'first');
DO $$ BEGIN RAISE EXCEPTION 'boom: widgets migration exploded'; END $$;
`,
    });
    fixedDir = await migrationsDir({
      name: 'widgets',
      sql: `CREATE TABLE widgets (id bigint PRIMARY KEY, label text NOT NULL);\nINSERT INTO widgets VALUES (1, 'first');\n`,
    });
    t = await createTestApp({ tenantMigrationsDir: brokenDir });
  });
  afterAll(() => t?.close());

  it('answers a bare 500, leaves no schema, org or migration status behind, and a fixed rerun succeeds', async () => {
    const failed = await t.request('POST', '/v1/orgs', { key: t.platformKey, body: { slug: 'fragile', name: 'Fragile' } });
    expect(failed.status).toBe(500);
    expect(failed.headers.get('content-type')).toContain('application/problem+json');
    expect(failed.body).toEqual({
      type: expect.any(String),
      title: expect.any(String),
      status: 500,
      code: 'internal',
      request_id: expect.any(String),
    });
    expect(failed.text).not.toMatch(/boom|widgets|org_fragile|RAISE|CREATE|exception/i);
    // The cause is in the server's log, not lost.
    expect(t.logs.some((line) => line.includes('boom: widgets migration exploded'))).toBe(true);

    expect(await leftovers(t, 'fragile')).toEqual({ schemata: 0, namespaces: 0, organizations: 0, tenantMigrations: 0 });
    const [tables] = await t.app.deps.sql`select count(*)::int as n from pg_class where relname = 'widgets'`;
    expect(tables!.n).toBe(0);

    // Called directly the failure surfaces as a throw, and again leaves nothing.
    await expect(provisionOrg(t.app.deps, { input: { slug: 'fragile', name: 'Fragile' } })).rejects.toThrow(/boom/);
    expect(await leftovers(t, 'fragile')).toEqual({ schemata: 0, namespaces: 0, organizations: 0, tenantMigrations: 0 });

    // A new app on the same database with the fixed migrations provisions the same slug.
    const fixed = await createApp(t.config, {
      databaseUrl: t.database.url,
      logger: createLogger('silent'),
      tenantMigrationsDir: fixedDir,
    });
    try {
      const response = await fixed.http.request('/v1/orgs', {
        method: 'POST',
        headers: { authorization: `Bearer ${t.platformKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ slug: 'fragile', name: 'Fragile' }),
      });
      expect(response.status).toBe(201);
    } finally {
      await fixed.close();
    }
    expect(await leftovers(t, 'fragile')).toEqual({ schemata: 1, namespaces: 1, organizations: 1, tenantMigrations: 1 });
    const { sql } = t.app.deps;
    const [status] = await sql`select version, error from public.tenant_migrations where schema_name = 'org_fragile'`;
    expect(status).toEqual({ version: shipped.length + 1, error: null });
    expect(await sql`select id, label from org_fragile.widgets`).toEqual([{ id: '1', label: 'first' }]);
    expect(await sql`select type from org_fragile.signals`).toEqual([{ type: 'org.created' }]);
  });
});

describe('migrating 200 tenants when one of them breaks', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t?.close());

  it('migrates 199, records the one failure, resumes only that one after a fix, then has nothing to do', async () => {
    const { sql } = t.app.deps;
    const slugs = Array.from({ length: 200 }, (_, index) => `t${String(index).padStart(3, '0')}`);
    await mapLimit(slugs, 8, (slug) => provisionOrg(t.app.deps, { input: { slug, name: `Tenant ${slug}` } }));
    const base = shipped.length;
    const latest = base + 1;
    const [provisioned] = await sql`
      select count(*)::int as n from public.tenant_migrations where version = ${base} and error is null`;
    expect(provisioned!.n).toBe(200);

    const migrations: TenantMigration[] = await loadTenantMigrations(
      await migrationsDir({
        name: 'widgets',
        sql: 'CREATE TABLE widgets (id bigint PRIMARY KEY, label text NOT NULL);\nCREATE INDEX widgets_label ON widgets (label);\n',
      }),
    );
    expect(migrations).toHaveLength(latest);

    // A conflicting object in one tenant: its migration must fail, alone.
    await sql`create table org_t057.widgets (x int)`;

    const progress: TenantMigrationResult[] = [];
    const first = await migrateAllTenants(sql, migrations, {
      concurrency: 4,
      batchSize: 50,
      onProgress: (result) => progress.push(result),
    });
    expect(first.latest).toBe(latest);
    expect(first.failed).toEqual([{ slug: 't057', from: base, to: base, error: expect.stringMatching(/widgets.*already exists/) }]);
    expect(first.migrated).toHaveLength(199);
    expect(new Set(first.migrated.map((result) => result.slug))).toEqual(new Set(slugs.filter((slug) => slug !== 't057')));
    for (const result of first.migrated) expect(result).toEqual({ slug: result.slug, from: base, to: latest });
    expect(progress).toHaveLength(200);

    const statuses = await sql`
      select version, count(*)::int as tenants, count(error)::int as errors
        from public.tenant_migrations group by version order by version`;
    expect(statuses).toEqual([
      { version: base, tenants: 1, errors: 1 },
      { version: latest, tenants: 199, errors: 0 },
    ]);
    const [broken] = await sql`
      select m.version, m.error, m.error_version, m.error_at is not null as has_error_at
        from public.tenant_migrations m join public.organizations o on o.id = m.org_id
       where o.slug = 't057'`;
    expect(broken).toEqual({
      version: base,
      error: expect.stringMatching(/widgets.*already exists/),
      error_version: latest,
      has_error_at: true,
    });
    const [labelled] = await sql`
      select count(*)::int as n from information_schema.columns
       where table_name = 'widgets' and column_name = 'label' and table_schema like 'org_t%'`;
    expect(labelled!.n).toBe(199);
    expect((await t.app.deps.readiness()).detail).toMatchObject({ tenants_failing: 1 });

    // Fix the tenant; the rerun touches only it and clears its error.
    await sql`drop table org_t057.widgets`;
    const second = await migrateAllTenants(sql, migrations, { concurrency: 4, batchSize: 50 });
    expect(second).toEqual({ latest, migrated: [{ slug: 't057', from: base, to: latest }], failed: [] });
    const [fixed] = await sql`
      select m.version, m.error, m.error_version, m.error_at
        from public.tenant_migrations m join public.organizations o on o.id = m.org_id
       where o.slug = 't057'`;
    expect(fixed).toEqual({ version: latest, error: null, error_version: null, error_at: null });
    const [current] = await sql`
      select count(*)::int as n from public.tenant_migrations where version = ${latest} and error is null`;
    expect(current!.n).toBe(200);

    const third = await migrateAllTenants(sql, migrations, { concurrency: 4, batchSize: 50 });
    expect(third).toEqual({ latest, migrated: [], failed: [] });

    await expectDefaultSearchPathOnEveryPooledConnection(t);
  });
});

describe('search_path on pooled connections', () => {
  let t: TestApp;
  beforeAll(async () => {
    // pg_dump output starts by setting search_path for the session; a
    // migration pasted from it must not leave that on the connection either.
    const dir = await migrationsDir(
      {
        name: 'gadgets',
        sql: "CREATE TABLE gadgets (id bigint PRIMARY KEY);\nSELECT pg_catalog.set_config('search_path', '', false);\n",
      },
      {
        name: 'gizmos',
        sql: 'CREATE TABLE gizmos (id bigint PRIMARY KEY);\nSET search_path TO public;\n',
      },
    );
    t = await createTestApp({ tenantMigrationsDir: dir });
  });
  afterAll(() => t?.close());

  it('stays the default on every connection after provisioning and migrating tenants, even when a migration sets it', async () => {
    const { sql } = t.app.deps;
    // As many tenants in flight as the pool has connections, so every connection runs migrations.
    const poolSize = t.config.SIGNALBUS_DB_POOL_SIZE;
    const slugs = Array.from({ length: poolSize * 2 }, (_, index) => `sp${index}`);
    await mapLimit(slugs, poolSize, (slug) => provisionOrg(t.app.deps, { input: { slug, name: slug } }));
    await expectDefaultSearchPathOnEveryPooledConnection(t);

    // The same through migrateAllTenants: roll the status back and migrate again.
    for (const slug of slugs) {
      await sql.unsafe(`drop table org_${slug}.gadgets, org_${slug}.gizmos`);
    }
    await sql`update public.tenant_migrations set version = ${shipped.length}`;
    const report = await migrateAllTenants(sql, t.app.deps.tenantMigrations, { concurrency: poolSize, batchSize: 5 });
    expect(report.failed).toEqual([]);
    expect(report.migrated).toHaveLength(slugs.length);
    const [tables] = await sql`
      select count(*)::int as n from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where c.relname in ('gadgets', 'gizmos') and n.nspname like 'org_sp%'`;
    expect(tables!.n).toBe(slugs.length * 2);
    await expectDefaultSearchPathOnEveryPooledConnection(t);
  });
});
