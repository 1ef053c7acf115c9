/**
 * What a replay mode is: a step function the replay job calls, and the
 * request-time facts the request verb needs from it. The job owns the
 * lifecycle — started, progress checkpoints, completed, failed, cancelled,
 * all `replay.*` signals attributed to the requesting actor — and a mode owns
 * only its work. docs/replay.md describes how to write one.
 */
import type { Permission } from '../auth/roles.ts';
import type { Tenant } from '../core/tenant.ts';
import type { Tx } from '../db/transaction.ts';
import type { VerbContext } from '../signals/verb-context.ts';
import type { ReplayModeName, ReplayReport, ReplayRequest, ReplayRow } from './model.ts';

export interface ReplayProgressUpdate<Checkpoint> {
  /** Units done so far in this replay (signals, for the modes that read the log), resumed runs included. */
  processed: number;
  /** Units in all, when known; may grow (a rebuild catching up with live writes). */
  total: number | null;
  /** Where to resume: handed back as `run.checkpoint` to the run after a crash. JSON. */
  checkpoint: Checkpoint;
}

export interface CompleteOptions {
  /** The caller's transaction: the mode's last writes and the completion commit together. */
  tx?: Tx;
  processed?: number;
  total?: number | null;
  /** When the mode's result stops being readable (as-of). */
  expiresAt?: string | null;
}

/** One run of one replay: what a mode's step function is handed. */
export interface ReplayRun<Checkpoint = unknown> {
  /** The replay as it stood when this run began. */
  readonly replay: ReplayRow;
  readonly tenant: Tenant;
  /** The requesting actor, source `replay:<id>`: what the mode's own signals are attributed to. */
  readonly ctx: VerbContext;
  /** The checkpoint of the last recorded progress; null on a first run. */
  readonly checkpoint: Checkpoint | null;
  /** `processed` as of that checkpoint. */
  readonly processed: number;
  /**
   * Records a checkpoint as a `replay.progress` signal — in `tx` when given,
   * so the step's writes and its checkpoint commit together and a resumed
   * run neither repeats nor skips work. Throws `ReplayCancelledError` (rolling
   * `tx` back) once the replay was cancelled; waits as needed to hold the
   * request's `rate_per_s`.
   */
  progress(update: ReplayProgressUpdate<Checkpoint>, tx?: Tx): Promise<void>;
  /**
   * Ends the replay as succeeded with `report`. Optional: a step that
   * returns a report has it completed for it; a step that must commit its
   * last writes with the completion (a rebuild's swap) calls this in its
   * transaction. Throws `ReplayCancelledError` when cancelled meanwhile.
   */
  complete(report: ReplayReport, options?: CompleteOptions): Promise<void>;
  /** True once the replay was cancelled: for long work between checkpoints. */
  cancelled(): Promise<boolean>;
}

export interface ReplayPlan {
  /**
   * What another replay of this mode may not share while this one is queued
   * or running (projection or handler names; `*` for all): an overlap is 409
   * `replay_in_progress`.
   */
  scope: string[];
  /** Authority this request needs beyond `org:replay` (redeliver with `new_directives: "execute"` needs `org:admin`). */
  requires?: Permission;
}

export interface ReplayMode<Checkpoint = unknown> {
  readonly name: ReplayModeName;
  /** At request time: check the mode's own options (throw a `validation_failed` DomainError) and name its scope. */
  plan(request: ReplayRequest, tenant: Tenant): ReplayPlan;
  /**
   * The work, resumable: start from `run.checkpoint` (null: from the
   * beginning), call `run.progress` at each checkpoint, return the report
   * (or call `run.complete` and return nothing). Throwing fails the replay
   * (a `ReplayStepError` says at which signal); the job records it.
   */
  run(run: ReplayRun<Checkpoint>): Promise<ReplayReport | void>;
  /** Removes what an unfinished run left (shadow tables) after a failure or cancel. Idempotent. */
  discard?(replay: ReplayRow, tenant: Tenant): Promise<void>;
}

/** Thrown by `progress` and `complete` once the replay was cancelled; the job then discards and stops. */
export class ReplayCancelledError extends Error {
  constructor(readonly replayId: string) {
    super(`replay ${replayId} was cancelled`);
    this.name = 'ReplayCancelledError';
  }
}

/** A step's failure at a known signal: recorded with its position, the replay ends as failed. */
export class ReplayStepError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly at: { position?: string | null; signal_id?: string | null } = {},
  ) {
    super(message);
    this.name = 'ReplayStepError';
  }
}

export interface ReplayModes {
  get(name: string): ReplayMode | undefined;
  names(): ReplayModeName[];
}

export function createReplayModes(modes: ReplayMode<any>[]): ReplayModes {
  const byName = new Map<string, ReplayMode>(modes.map((mode) => [mode.name, mode as ReplayMode]));
  return { get: (name) => byName.get(name), names: () => [...byName.keys()] as ReplayModeName[] };
}
