import type { Sql } from '../db/client.ts';
import type { EmitDeps } from '../signals/emit.ts';
import type { ReplayModes } from './modes.ts';

/** What the replay verbs and the replay job use. */
export interface ReplayDeps {
  sql: Sql;
  emit: EmitDeps;
  modes: ReplayModes;
  /** Fixed clock (tests). */
  now?: () => Date;
}

export const nowOf = (deps: Pick<ReplayDeps, 'now'>): string => (deps.now ? deps.now() : new Date()).toISOString();
