/**
 * The newcomer's path, process by process: `signalbus start` with no
 * DATABASE_URL runs an embedded PostgreSQL in the data dir; other commands find
 * it running; stopping `start` stops the database too; a second `start` reuses
 * the data dir. Every child gets DATABASE_URL stripped, so this runs the
 * embedded database even when the suite itself runs against a server.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterProcesses as clusterOn, exitWithin, liveProcesses, spawnCollected, stopChildren, waitForOutput, type Spawned } from '../support/cli-process.ts';
import { waitFor } from '../support/harness.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'bin/signalbus.js');
const TIMEOUT = 120_000;

const dataDirs: string[] = [];

function childEnv(dataDir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.DATABASE_URL;
  return { ...env, SIGNALBUS_DATA_DIR: dataDir, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', ...extra };
}

function run(args: string[], env: NodeJS.ProcessEnv): Spawned {
  return spawnCollected(process.execPath, [CLI, ...args], { cwd: ROOT, env });
}

/** Runs a command to completion. */
async function runToEnd(args: string[], env: NodeJS.ProcessEnv, ms = 60_000) {
  const spawned = run(args, env);
  const { code } = await exitWithin(spawned, ms);
  return { code, stdout: spawned.stdout, stderr: spawned.stderr };
}

interface Server extends Spawned {
  url: string;
  adminKey: string;
}

/** `signalbus start`, once it has announced its URL and platform admin key. */
async function start(dataDir: string): Promise<Server> {
  const spawned = run(['start'], childEnv(dataDir));
  const announced = await waitForOutput(
    spawned,
    (stdout) => {
      const url = /^\s*API:\s+(http:\/\/\S+)\/v1\s*$/m.exec(stdout)?.[1];
      const adminKey = /^\s*platform admin key:\s+(sbk_\S+)\s*$/m.exec(stdout)?.[1];
      return url && adminKey ? { url, adminKey } : undefined;
    },
    'signalbus start to announce itself',
  );
  return Object.assign(spawned, announced);
}

/** The embedded cluster's postmaster for `dataDir` and its children. */
const clusterProcesses = (dataDir: string) => clusterOn(path.join(dataDir, 'pg'));

async function postmasterPid(dataDir: string): Promise<number | undefined> {
  const text = await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').catch(() => undefined);
  return text ? Number(text.split('\n')[0]) : undefined;
}

/** SIGTERMs `start` and checks it exits 0 promptly, taking every postgres process of its cluster with it. */
async function stopAndExpectClean(server: Server, dataDir: string) {
  const pid = await postmasterPid(dataDir);
  expect(pid).toBeGreaterThan(0);
  const cluster = clusterProcesses(dataDir).map((proc) => proc.pid);
  expect(cluster).toContain(pid);
  expect(cluster.length).toBeGreaterThan(1); // the postmaster and its background workers

  const stopping = Date.now();
  server.child.kill('SIGTERM');
  const { code, signal } = await exitWithin(server, 15_000);
  // On an unclean exit: the last log lines, and the start of whatever was not a log line (an uncaught error).
  const logs = (text: string) => text.split('\n').filter((line) => line.startsWith('{'));
  const other = (text: string) => text.split('\n').filter((line) => line.trim() && !line.startsWith('{'));
  const output = [...logs(server.stdout + server.stderr).slice(-10), ...other(server.stderr).slice(0, 40)].join('\n');
  expect({ code, signal }, output).toEqual({ code: 0, signal: null });
  expect(Date.now() - stopping).toBeLessThan(15_000);

  // `start` waits for the postmaster itself; its backends go with it.
  await waitFor(
    () => {
      const alive = new Set(liveProcesses().map((proc) => proc.pid));
      return cluster.every((clusterPid) => !alive.has(clusterPid));
    },
    10_000,
    'the embedded cluster to be gone',
  );
  expect(clusterProcesses(dataDir)).toEqual([]);
  expect(existsSync(path.join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);
}

async function api(server: { url: string }, method: string, route: string, key: string, body?: unknown) {
  const response = await fetch(`${server.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

let dataDir: string;
let first: Server | undefined;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'signalbus-cli-'));
  dataDirs.push(dataDir);
});

afterAll(async () => {
  // Whatever failed above, leave no process behind: our children first, then
  // any cluster they started (it runs detached, so it outlives a killed parent).
  await stopChildren();
  for (const dir of dataDirs) {
    for (const proc of clusterProcesses(dir).filter((candidate) => candidate.args.includes(`-D ${dir}`))) {
      process.kill(proc.pid, 'SIGINT');
      await waitFor(() => !clusterProcesses(dir).some((other) => other.pid === proc.pid), 30_000, 'postgres to stop').catch(
        () => process.kill(proc.pid, 'SIGKILL'),
      );
    }
    await rm(dir, { recursive: true, force: true });
  }
}, TIMEOUT);

describe('signalbus with the embedded PostgreSQL', () => {
  let operatorKey: string;
  let orgId: string;
  let signalId: string;

  it(
    'start on a fresh data dir serves the API at the printed URL with the printed platform admin key',
    async () => {
      first = await start(dataDir);
      expect(first.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(first.stdout).toContain('on the embedded PostgreSQL');
      expect(first.stdout).toContain(`PostgreSQL data:     ${path.join(dataDir, 'pg')}`);
      // A clean first screen: no warning a newcomer cannot act on.
      expect(first.stdout + first.stderr).not.toMatch(/"level":40|WARNING/);
      expect((await readFile(path.join(dataDir, 'platform-admin-key'), 'utf8')).trim()).toBe(first.adminKey);

      const ready = await fetch(`${first.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ready', database: 'ok', migrations: 'current' });

      const org = await api(first, 'POST', '/v1/orgs', first.adminKey, { slug: 'acme', name: 'Acme Inc' });
      expect(org.status).toBe(201);
      orgId = org.body.org.id;
      const key = await api(first, 'POST', '/v1/orgs/acme/api-keys', first.adminKey, {
        name: 'ci',
        role: 'operator',
        actor: { type: 'human', id: 'ana@acme.test' },
      });
      expect(key.status).toBe(201);
      operatorKey = key.body.secret;
      const emitted = await api(first, 'POST', '/v1/orgs/acme/signals', operatorKey, {
        type: 'order.placed',
        subject: 'order:1',
        payload: { total: 42 },
      });
      expect(emitted.status).toBe(201);
      expect(emitted.body.signal.actor).toEqual({ type: 'human', id: 'ana@acme.test' });
      signalId = emitted.body.signal.id;
    },
    TIMEOUT,
  );

  it(
    'orgs create and keys create, run beside it, use the running database instead of starting another',
    async () => {
      const server = first!;
      const pid = await postmasterPid(dataDir);
      const env = childEnv(dataDir);

      const orgs = await runToEnd(['orgs', 'create', 'other', '--name', 'Other', '--json'], env);
      expect(orgs.code, orgs.stderr).toBe(0);
      const created = JSON.parse(orgs.stdout);
      expect(created).toEqual({
        org: { id: expect.stringMatching(/^org_/), slug: 'other', name: 'Other', status: 'active', created_at: expect.any(String) },
        admin_key: expect.stringMatching(/^sbk_/),
      });

      const keys = await runToEnd(['keys', 'create', '--org', 'other', '--role', 'operator', '--json'], env);
      expect(keys.code, keys.stderr).toBe(0);
      const key = JSON.parse(keys.stdout);
      expect(key).toEqual({
        api_key: expect.objectContaining({ id: expect.stringMatching(/^key_/), role: 'operator', org_id: created.org.id }),
        secret: expect.stringMatching(/^sbk_/),
      });

      // Still the one cluster `start` owns, and still up after both commands exited.
      expect(await postmasterPid(dataDir)).toBe(pid);
      expect(clusterProcesses(dataDir).filter((proc) => proc.ppid !== pid).map((proc) => proc.pid)).toEqual([pid]);
      expect((await fetch(`${server.url}/readyz`)).status).toBe(200);

      // The printed keys work against the running server.
      const emitted = await api(server, 'POST', '/v1/orgs/other/signals', key.secret, { type: 'note.added', payload: {} });
      expect(emitted.status).toBe(201);
      const viewer = await api(server, 'POST', '/v1/orgs/other/api-keys', created.admin_key, { name: 'viewer', role: 'viewer' });
      expect(viewer.status).toBe(201);
      // An org key stays within its org.
      expect((await api(server, 'GET', '/v1/orgs/acme/signals', key.secret)).status).toBe(404);
    },
    TIMEOUT,
  );

  it(
    'SIGTERM stops start with exit 0 and stops the embedded database it started',
    async () => {
      await stopAndExpectClean(first!, dataDir);
    },
    TIMEOUT,
  );

  it(
    'a second start reuses the data dir: same platform admin key, same orgs and signals',
    async () => {
      const second = await start(dataDir);
      try {
        expect(second.adminKey).toBe(first!.adminKey);
        expect(second.stdout).not.toContain('initialising embedded PostgreSQL');
        const again = await api(second, 'POST', '/v1/orgs', second.adminKey, { slug: 'acme', name: 'Acme Inc' });
        expect(again.status).toBe(200);
        expect(again.body.org.id).toBe(orgId);
        const list = await api(second, 'GET', '/v1/orgs/acme/signals', operatorKey);
        expect(list.status).toBe(200);
        const signals = list.body.data as Array<{ id: string; type: string }>;
        expect(signals[0]!.type).toBe('org.created');
        expect(signals.filter((signal) => signal.type === 'order.placed').map((signal) => signal.id)).toEqual([signalId]);
      } finally {
        await stopAndExpectClean(second, dataDir);
      }
    },
    TIMEOUT,
  );

  it(
    'migrate starts the embedded database, migrates, and stops it again',
    async () => {
      expect(clusterProcesses(dataDir)).toEqual([]);
      const migrate = await runToEnd(['migrate'], childEnv(dataDir));
      expect(migrate.code, migrate.stderr).toBe(0);
      expect(migrate.stdout).toContain('starting embedded PostgreSQL');
      const done = migrate.stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((line) => line.msg === 'tenant migrations done');
      expect(done).toMatchObject({ migrated: 0, failed: 0 });
      expect(clusterProcesses(dataDir)).toEqual([]);
      expect(existsSync(path.join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);
    },
    TIMEOUT,
  );

  it(
    'a bad configuration value exits non-zero naming the variable, before touching the data dir',
    async () => {
      const fresh = path.join(dataDir, 'never-created');
      const bad = await runToEnd(['start'], childEnv(fresh, { PORT: 'notanumber' }));
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/PORT/);
      expect(existsSync(fresh)).toBe(false);
    },
    TIMEOUT,
  );
});
