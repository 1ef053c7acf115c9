/**
 * What the replay benches share: each replay runs in a worker process of its
 * own (scripts/bench/fanout-worker.ts), export and import run as the CLI does,
 * and the resident memory of that process is sampled from /proc — so the
 * figures are the worker's, not the bench's, and a phase is timed from its
 * request to its end as the API would report it.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { finished } from 'node:stream/promises';
import path from 'node:path';
import type { SignalbusApp } from '../../src/app.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { PROJECT_ROOT } from '../../src/db/migrate.ts';
import { requestReplay, showReplay } from '../../src/replay/verbs.ts';
import type { Replay } from '../../src/replay/store.ts';
import { startWorkerProcess } from './support.ts';

/** Org sizes: BENCH_SIGNALS (or BENCH_REPLAY_SIZES), comma separated; default 50,000 and 200,000. */
export const SIZES = (process.env.BENCH_SIGNALS ?? process.env.BENCH_REPLAY_SIZES ?? '50000,200000').split(',').map(Number);

const MIB = 2 ** 20;

async function memoryOf(pid: number): Promise<{ rss: number; hwm: number } | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024;
    return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
  } catch {
    return undefined;
  }
}

export interface RssWatch {
  /** Stops sampling: the RSS when it began and the peak since, in MiB. */
  stop(): Promise<{ startMiB: number; peakMiB: number }>;
}

/**
 * Samples a process's RSS every 20 ms and its high-water mark (VmHWM), which
 * is first reset to the present (clear_refs 5), so the peak is this phase's
 * and a spike between samples still counts.
 */
export async function watchRss(pid: number): Promise<RssWatch> {
  await writeFile(`/proc/${pid}/clear_refs`, '5').catch(() => {});
  const start = (await memoryOf(pid))?.rss ?? 0;
  let peak = start;
  const sample = async () => {
    const memory = await memoryOf(pid);
    if (memory) peak = Math.max(peak, memory.rss, memory.hwm);
  };
  const timer = setInterval(() => void sample(), 20);
  return {
    async stop() {
      clearInterval(timer);
      await sample();
      return { startMiB: +(start / MIB).toFixed(1), peakMiB: +(peak / MIB).toFixed(1) };
    },
  };
}

export interface PhaseResult {
  replay: Replay;
  seconds: number;
  /** The worker's RSS when the phase began (loaded, idle) and its peak during the phase, in MiB. */
  workerIdleMiB: number;
  workerPeakMiB: number;
}

/**
 * Requests a replay and waits for it to end, run by a worker process started
 * for it alone (with `env`: the handlers it needs, the page size), whose RSS
 * is watched from the request to the end.
 */
export async function replayInWorker(
  app: SignalbusApp,
  databaseUrl: string,
  tenant: Tenant,
  request: Record<string, unknown>,
  env: Record<string, string> = {},
): Promise<PhaseResult> {
  const worker = await startWorkerProcess(databaseUrl, { SIGNALBUS_WORKER_CONCURRENCY: '2', ...env });
  try {
    // Settled after loading, so the idle figure is not the start-up's garbage.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const watch = await watchRss(worker.child.pid!);
    const ctx = { tenant, actor: { type: 'human' as const, id: 'support@bench.test' }, source: 'api' };
    const started = performance.now();
    const { id } = await requestReplay(app.deps.bus.replays, { ctx, input: { role: 'admin', request: { reason: 'bench', ...request } } });
    let replay: Replay;
    for (;;) {
      replay = await showReplay(app.deps.bus.replays, { ctx, input: { id } });
      if (replay.status !== 'queued' && replay.status !== 'running') break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const seconds = (performance.now() - started) / 1000;
    const memory = await watch.stop();
    if (replay.status !== 'succeeded') throw new Error(`${String(request.mode)} replay ${replay.status}: ${JSON.stringify(replay.error)}`);
    return { replay, seconds, workerIdleMiB: memory.startMiB, workerPeakMiB: memory.peakMiB };
  } finally {
    await worker.stop();
  }
}

/**
 * What a CLI process costs before it does anything: `orgs export` of an org
 * that does not exist loads, connects and exits.
 */
export function cliStartup(databaseUrl: string) {
  return cliProcess(['orgs', 'export', 'no_such_org'], { DATABASE_URL: databaseUrl }, { exitCode: 1 });
}

/**
 * Runs `signalbus <args>` as its own process (stdout to `stdoutFile` when
 * given), watching its RSS for its whole life: answers its duration and peak.
 */
export async function cliProcess(
  args: string[],
  env: Record<string, string>,
  { stdoutFile, exitCode = 0 }: { stdoutFile?: string; exitCode?: number } = {},
): Promise<{ seconds: number; peakMiB: number; stdout: string }> {
  const started = performance.now();
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'bin/signalbus.js'), ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const watch = await watchRss(child.pid!);
  let stdout = '';
  const written = stdoutFile ? finished(child.stdout!.pipe(createWriteStream(stdoutFile))) : undefined;
  if (!stdoutFile) child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  // Sampled until it is gone: the high-water mark stays readable until then.
  const [code] = (await once(child, 'exit')) as [number | null];
  const memory = await watch.stop();
  await written;
  if (code !== exitCode) throw new Error(`signalbus ${args.join(' ')} exited with ${code}`);
  return { seconds: (performance.now() - started) / 1000, peakMiB: memory.peakMiB, stdout };
}
