/**
 * signalbus workers as real child processes (test/support/worker-process.ts),
 * for tests that SIGKILL them. Every child is tracked by the leak guard and
 * keeps its last output lines for failure messages.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { releaseResource, trackResource } from './leak-guard.ts';

const workerScript = fileURLToPath(new URL('./worker-process.ts', import.meta.url));
const projectRoot = fileURLToPath(new URL('../../', import.meta.url));
const WORKER_READY_MS = 90_000;

export interface WorkerChild {
  child: ChildProcess;
  pid: number;
  exited: Promise<void>;
  output: string[];
}

export interface WorkerChildren {
  spawn(): Promise<WorkerChild>;
  kill(worker: WorkerChild): Promise<void>;
  /** Those still running. */
  alive(): WorkerChild[];
  /** Every one spawned, dead ones too. */
  spawned: WorkerChild[];
  /** The last lines of every worker, oldest first. */
  outputs(lines?: number): string;
  killAll(): Promise<void>;
}

export function workerChildren(env: Record<string, string>): WorkerChildren {
  const children = new Set<WorkerChild>();
  const spawned: WorkerChild[] = [];

  async function spawnWorker(): Promise<WorkerChild> {
    const child = spawn(process.execPath, ['--import', 'tsx', workerScript], {
      cwd: projectRoot,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output: string[] = [];
    const keep = (chunk: Buffer) => {
      output.push(...chunk.toString().split('\n').filter(Boolean));
      if (output.length > 400) output.splice(0, output.length - 400);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    const worker: WorkerChild = {
      child,
      pid: child.pid!,
      output,
      exited: new Promise((resolve) => child.once('exit', () => resolve())),
    };
    children.add(worker);
    spawned.push(worker);
    trackResource(worker, `worker process ${child.pid}`);
    void worker.exited.then(() => {
      children.delete(worker);
      releaseResource(worker);
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`worker process ${child.pid} not ready after ${WORKER_READY_MS} ms:\n${output.join('\n')}`)),
        WORKER_READY_MS,
      );
      const ready = () => {
        if (!output.some((line) => line.startsWith('worker ready'))) return;
        child.stdout!.off('data', ready);
        clearTimeout(timer);
        resolve();
      };
      child.stdout!.on('data', ready);
      void worker.exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`worker process exited before it was ready:\n${output.join('\n')}`));
      });
    });
    return worker;
  }

  async function kill(worker: WorkerChild): Promise<void> {
    worker.child.kill('SIGKILL');
    await worker.exited;
  }

  return {
    spawn: spawnWorker,
    kill,
    alive: () => [...children],
    spawned,
    outputs: (lines = 15) => spawned.map((worker) => `--- worker ${worker.pid}:\n${worker.output.slice(-lines).join('\n')}`).join('\n'),
    killAll: async () => {
      await Promise.all([...children].map(kill));
    },
  };
}
