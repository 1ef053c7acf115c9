/**
 * CLI commands as child processes, for the process-level tests: spawn one
 * with its output collected, wait for its exit with a deadline, see what
 * `ps` sees, and leave nothing running at the end of a file.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { bundledScript } from './bundle.ts';
import { waitFor } from './harness.ts';

/**
 * The CLI's sources bundled into one script for `node`: for tests of what
 * commands do, which start it dozens of times. How a newcomer launches it,
 * bin/signalbus.js through tsx, is what the start-up tests run.
 */
export const cliScript = () => bundledScript(fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url)));

export interface Spawned {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();

export function spawnCollected(command: string, args: string[], options: SpawnOptions): Spawned {
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const spawned: Spawned = {
    child,
    stdout: '',
    stderr: '',
    exit: new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        children.delete(child);
        resolve({ code, signal });
      });
    }),
  };
  child.stdout!.on('data', (chunk: Buffer) => (spawned.stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (spawned.stderr += chunk.toString()));
  return spawned;
}

/** Resolves with the exit, or rejects once `ms` have passed. */
export async function exitWithin(spawned: Spawned, ms: number) {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`process did not exit within ${ms} ms\n${spawned.stdout}\n${spawned.stderr}`)), ms);
  });
  try {
    return await Promise.race([spawned.exit, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** What `parse` finds in a running command's stdout once it is there; fails at once if the command exits first. */
export function waitForOutput<T>(spawned: Spawned, parse: (stdout: string) => T | undefined, what: string, ms = 90_000): Promise<T> {
  let exited = false;
  void spawned.exit.then(() => (exited = true));
  return waitFor(
    () => {
      if (exited) throw new Error(`exited before ${what}:\n${spawned.stdout}\n${spawned.stderr}`);
      return parse(spawned.stdout);
    },
    ms,
    what,
  );
}

/** SIGTERMs every child still running, SIGKILLs those that do not exit within 15 s. */
export async function stopChildren(): Promise<void> {
  for (const child of children) {
    child.kill('SIGTERM');
    const exited = await Promise.race([
      new Promise((resolve) => child.once('exit', resolve)).then(() => true),
      new Promise((resolve) => setTimeout(resolve, 15_000)).then(() => false),
    ]);
    if (!exited) child.kill('SIGKILL');
  }
}

export interface Proc {
  pid: number;
  ppid: number;
  stat: string;
  args: string;
}

/** Every process but zombies, as `ps` sees them. */
export function liveProcesses(): Proc[] {
  return execFileSync('ps', ['-eo', 'pid=,ppid=,stat=,args='], { encoding: 'utf8' })
    .split('\n')
    .map((line) => /^\s*(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/.exec(line))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => ({ pid: Number(match[1]), ppid: Number(match[2]), stat: match[3]!, args: match[4]! }))
    .filter((proc) => !proc.stat.startsWith('Z'));
}

/** The postmaster running on `pgData` and its children. */
export function clusterProcesses(pgData: string): Proc[] {
  const all = liveProcesses();
  const postmasters = all.filter((proc) => proc.args.includes(`-D ${pgData} `));
  const pids = new Set(postmasters.map((proc) => proc.pid));
  return [...postmasters, ...all.filter((proc) => pids.has(proc.ppid))];
}
