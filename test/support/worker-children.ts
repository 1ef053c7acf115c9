/**
 * signalbus workers as real child processes (test/support/worker-process.ts),
 * for tests that SIGKILL them. Every child is tracked by the leak guard and
 * keeps its last output lines for failure messages.
 *
 * Loading the app takes a child seconds on a busy machine, and crash tests
 * replace dozens of dead workers; so children run a bundle of the fixture
 * (test/support/bundle.ts) and are warmed ahead: a spare loads everything,
 * then waits for a line on stdin before it starts its worker. Taking a spare
 * costs only the worker's start.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { bundledScript } from './bundle.ts';
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
  /** Those started and still running (warm spares not included). */
  alive(): WorkerChild[];
  /** Every one started, dead ones too. */
  spawned: WorkerChild[];
  /** Started ones that died of a SIGKILL this parent did not send: their own crash. */
  selfKilled(): WorkerChild[];
  /** The last lines of every worker, oldest first. */
  outputs(lines?: number): string;
  /** Kills the started workers and the warm spares. */
  killAll(): Promise<void>;
}

interface Warm {
  worker: WorkerChild;
  /** Resolves once the child has loaded and waits for its go. */
  loaded: Promise<void>;
}

function waitForLine(worker: WorkerChild, prefix: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const { child, output } = worker;
    const timer = setTimeout(() => {
      child.stdout!.off('data', check);
      reject(new Error(`worker process ${child.pid} printed no "${prefix}" after ${WORKER_READY_MS} ms:\n${output.join('\n')}`));
    }, WORKER_READY_MS);
    function check() {
      if (!output.some((line) => line.startsWith(prefix))) return;
      child.stdout!.off('data', check);
      clearTimeout(timer);
      resolve();
    }
    child.stdout!.on('data', check);
    check();
    void worker.exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`worker process exited before "${prefix}":\n${output.join('\n')}`));
    });
  });
}

/** `spares`: how many children to keep loaded ahead of need. */
export function workerChildren(env: Record<string, string>, options: { spares?: number } = {}): WorkerChildren {
  const spares = options.spares ?? 2;
  const started = new Set<WorkerChild>();
  const warming: Warm[] = [];
  const spawned: WorkerChild[] = [];
  const killedByParent = new Set<WorkerChild>();
  let closed = false;

  function warm(script: string): Warm {
    const child = spawn(process.execPath, [script], {
      cwd: projectRoot,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'warn', ...env, WORKER_WAIT_FOR_GO: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const output: string[] = [];
    const keep = (chunk: Buffer) => {
      output.push(...chunk.toString().split('\n').filter(Boolean));
      if (output.length > 400) output.splice(0, output.length - 400);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    // A child killed while the parent writes its go must not fail the parent.
    child.stdin!.on('error', () => {});
    const worker: WorkerChild = {
      child,
      pid: child.pid!,
      output,
      exited: new Promise((resolve) => child.once('exit', () => resolve())),
    };
    trackResource(worker, `worker process ${child.pid}`);
    const entry: Warm = { worker, loaded: waitForLine(worker, 'worker loaded') };
    entry.loaded.catch(() => {});
    void worker.exited.then(() => {
      started.delete(worker);
      const index = warming.indexOf(entry);
      if (index >= 0) warming.splice(index, 1);
      releaseResource(worker);
    });
    return entry;
  }

  function topUp(script: string): void {
    while (!closed && warming.length < spares) warming.push(warm(script));
  }

  async function spawnWorker(): Promise<WorkerChild> {
    closed = false;
    const script = await bundledScript(workerScript);
    topUp(script);
    const entry = warming.shift() ?? warm(script);
    topUp(script);
    const { worker } = entry;
    await entry.loaded;
    started.add(worker);
    spawned.push(worker);
    worker.child.stdin!.write('go\n');
    await waitForLine(worker, 'worker ready');
    return worker;
  }

  async function kill(worker: WorkerChild): Promise<void> {
    if (worker.child.exitCode === null && worker.child.signalCode === null) killedByParent.add(worker);
    worker.child.kill('SIGKILL');
    await worker.exited;
  }

  return {
    spawn: spawnWorker,
    kill,
    alive: () => [...started],
    spawned,
    selfKilled: () => spawned.filter((worker) => worker.child.signalCode === 'SIGKILL' && !killedByParent.has(worker)),
    outputs: (lines = 15) => spawned.map((worker) => `--- worker ${worker.pid}:\n${worker.output.slice(-lines).join('\n')}`).join('\n'),
    killAll: async () => {
      closed = true;
      const spare = warming.splice(0).map((entry) => entry.worker);
      await Promise.all([...started, ...spare].map(kill));
    },
  };
}
