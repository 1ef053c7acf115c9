/**
 * One PostgreSQL for the run: the embedded one in a temp dir when
 * DATABASE_URL is unset, else the server it names. A template database is
 * migrated once; each test file clones its own database from it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import type { TestProject } from 'vitest/node';
import { ensureEmbeddedDatabase, type EmbeddedDatabase } from '../../src/db/embedded.ts';
import { migratePublicSchema } from '../../src/db/migrate.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    adminUrl: string;
    templateDatabase: string;
    runId: string;
  }
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

export default async function setup(project: TestProject) {
  const runId = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
  let embedded: EmbeddedDatabase | undefined;
  let dataDir: string | undefined;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    dataDir = await mkdtemp(path.join(tmpdir(), 'signalbus-test-'));
    embedded = await ensureEmbeddedDatabase(dataDir, { database: 'postgres' });
    adminUrl = embedded.url;
  }
  const templateDatabase = `sbt_${runId}_template`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${templateDatabase}`);
  await migratePublicSchema(withDatabase(adminUrl, templateDatabase));

  project.provide('adminUrl', adminUrl);
  project.provide('templateDatabase', templateDatabase);
  project.provide('runId', runId);

  return async () => {
    const leftovers = await admin<{ datname: string }[]>`
      select datname from pg_database where datname like ${`sbt_${runId}_%`}`;
    for (const { datname } of leftovers) await admin.unsafe(`drop database if exists ${datname} with (force)`);
    await admin.end({ timeout: 5 });
    await embedded?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  };
}

export { withDatabase };
