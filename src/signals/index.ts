/**
 * signals — the log. `emit`/`emitBatch` are the only writers of a tenant's
 * `signals` table; reads page by the commit-ordered cursor and never past the
 * visibility horizon; the notifier wakes tailers after commits, and live
 * streams share one tail per org (broadcast). Called by
 * http, tenancy, auth, and later handlers, directives, webhooks and replay.
 */
export { emit, emitBatch, type EmitContext, type EmitDeps, type EmitResult, type BatchItemResult } from './emit.ts';
export { createAppendBatcher, type AppendBatcher } from './append-batcher.ts';
export { createLogNotifier, type LogNotifier } from './log-notifier.ts';
export { getSignal, listSignals, readSignalsAfter, hasSignalsAfter, currentHorizon } from './read.ts';
export { createLogBroadcast, type LogBroadcast, type StreamChunk } from './broadcast.ts';
export { decodeCursor, encodeCursor, BEGINNING, type Cursor, type Signal, type SignalRow } from './model.ts';
export { Actor, PLATFORM_ACTOR } from './actor.ts';
export { emitSystem, type SystemSignal } from './system.ts';
export type { NoInput, VerbContext, VerbCall } from './verb-context.ts';
