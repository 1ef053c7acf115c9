import { keyedProjection } from '../projections/keyed.ts';
import { evolveReplay, REPLAY_COLUMNS, replayIdOf, type ReplayRow } from './model.ts';

/** Folded live only: see tenants/0008_replays.sql. */
export const replaysProjection = keyedProjection<ReplayRow>({
  name: 'replays',
  table: 'replays',
  columns: REPLAY_COLUMNS,
  handles: (type) => type.startsWith('replay.') && type !== 'replay.denied',
  keyOf: replayIdOf,
  evolve: evolveReplay,
  creates: (signal) => signal.type === 'replay.requested',
});
