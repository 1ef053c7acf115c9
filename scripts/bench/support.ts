/** Shared pieces of the benchmarks: an embedded database, a server process, reporting. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureEmbeddedDatabase, type EmbeddedDatabase } from '../../src/db/embedded.ts';
import { PROJECT_ROOT } from '../../src/db/migrate.ts';
import { generateMasterKeys } from '../../src/secrets/keys.ts';

export interface BenchDatabase {
  url: string;
  stop(): Promise<void>;
}

/**
 * A fresh embedded PostgreSQL in a temp dir, removed afterwards; or, with
 * BENCH_DATABASE_URL, that database, which the bench expects empty.
 */
export async function benchDatabase(): Promise<BenchDatabase> {
  if (process.env.BENCH_DATABASE_URL) return { url: process.env.BENCH_DATABASE_URL, stop: async () => {} };
  const dataDir = await mkdtemp(path.join(tmpdir(), 'signalbus-bench-'));
  const embedded: EmbeddedDatabase = await ensureEmbeddedDatabase(dataDir, { database: 'bench' });
  return {
    url: embedded.url,
    async stop() {
      await embedded.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** The Node options the deployed processes run with (Dockerfile, fly.toml). */
const DEPLOYED_NODE_OPTIONS = '--max-semi-space-size=32';

/** BENCH_CPU_PROFILE_DIR: server and worker processes write a V8 CPU profile there when they stop. */
const cpuProfileFlags = () =>
  process.env.BENCH_CPU_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE_DIR}`] : [];

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  /** Peak resident set size so far, in MiB (VmHWM). */
  peakRssMiB(): Promise<number>;
  stop(): Promise<void>;
}

/** Benchmarks offer far more than a key's default limit; one that measures the limiter turns it on. */
export const NO_RATE_LIMITS = {
  SIGNALBUS_RATE_LIMIT_KEY_PER_S: '0',
  SIGNALBUS_RATE_LIMIT_ORG_PER_S: '0',
  SIGNALBUS_RATE_LIMIT_UNKNOWN_KEY_PER_S: '0',
};

/** Runs `signalbus serve` (or a bench's `script`) as its own process, as deployed. */
export async function startServer(databaseUrl: string, env: Record<string, string> = {}, { script }: { script?: string } = {}): Promise<ServerProcess> {
  const port = await freePort();
  // `script`: a bench's own server entry (TypeScript) instead of `signalbus serve`.
  const entry = script ? ['--import', 'tsx', path.join(PROJECT_ROOT, script)] : [path.join(PROJECT_ROOT, 'bin/signalbus.js'), 'serve'];
  const child = spawn(process.execPath, [...cpuProfileFlags(), ...entry], {
    cwd: PROJECT_ROOT,
    env: {
      ...process.env,
      NODE_OPTIONS: DEPLOYED_NODE_OPTIONS,
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      HOST: '127.0.0.1',
      SIGNALBUS_ENCRYPTION_KEYS: generateMasterKeys('bench'),
      ...NO_RATE_LIMITS,
      ...env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  // Generous: tsx compiles the sources at start, slow on a busy machine.
  const deadline = Date.now() + 90_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error('server did not start');
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    child,
    async peakRssMiB() {
      const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
      const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
      return Math.round(kb / 1024);
    },
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Runs `worker` on `concurrency` loops until `durationMs` has passed; returns operations done and elapsed ms. */
export async function closedLoop(
  concurrency: number,
  durationMs: number,
  worker: (loop: number, iteration: number) => Promise<void>,
): Promise<{ operations: number; elapsedMs: number }> {
  let operations = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, loop) => {
      for (let iteration = 0; performance.now() < deadline; iteration++) {
        await worker(loop, iteration);
        operations++;
      }
    }),
  );
  return { operations, elapsedMs: performance.now() - started };
}

export function printTable(title: string, rows: Array<Record<string, string | number>>) {
  console.log(`\n${title}`);
  console.table(rows);
}

export const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

export const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return +sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!.toFixed(1);
};

export interface WorkerChild {
  child: ChildProcess;
  stop(): Promise<void>;
}

/** `scripts/bench/fanout-worker.ts` as its own process, configured by `env`; resolves once it is ready. */
export async function startWorkerProcess(databaseUrl: string, env: Record<string, string>): Promise<WorkerChild> {
  const child = spawn(process.execPath, [...cpuProfileFlags(), '--import', 'tsx', path.join(PROJECT_ROOT, 'scripts/bench/fanout-worker.ts')], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, NODE_OPTIONS: DEPLOYED_NODE_OPTIONS, DATABASE_URL: databaseUrl, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`bench worker exited with ${code}`)));
  });
  return {
    child,
    async stop() {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Linux's USER_HZ: /proc counts CPU time in hundredths of a second. */
const MS_PER_CLOCK_TICK = 10;

/** CPU time (user + system) a process has used so far, in ms; 0 once it is gone. */
export async function processCpuMs(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * MS_PER_CLOCK_TICK;
  } catch {
    return 0;
  }
}

/** CPU time used so far by every PostgreSQL process on the machine, in ms. */
export async function postgresCpuMs(): Promise<number> {
  let total = 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if ((await readFile(`/proc/${entry}/comm`, 'utf8')).trim() === 'postgres') total += await processCpuMs(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return total;
}
