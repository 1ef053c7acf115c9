/**
 * The dispatcher's decisions, without I/O: which jobs one page of the log
 * makes for the org's subscriptions, which checkpoints the page advances,
 * and the run_at order of ordered handlers' jobs. Ids and the clock come in
 * as arguments.
 */
import { HANDLE_SIGNAL } from '../core/jobs.ts';
import type { JobSpec } from '../db/jobs.ts';
import type { SignalRow } from '../signals/model.ts';
import type { RegisteredHandler } from './registry.ts';

/** Ordered handlers' jobs spread over this many queues per (org, handler), by subject. */
const ORDERED_LANES = 64;

export type Position = { tx: bigint; seq: bigint };
export const compare = (a: Position, b: Position) => (a.tx === b.tx ? (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0) : a.tx < b.tx ? -1 : 1);

function lane(subject: string | null): number {
  if (subject === null) return 0;
  let hash = 0x811c9dc5;
  for (let i = 0; i < subject.length; i++) hash = Math.imul(hash ^ subject.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % ORDERED_LANES;
}

export function orderedQueueName(orgId: string, handler: string, subject: string | null): string {
  return `sb:${orgId}:${handler}:${lane(subject)}`;
}

/** A signal of the page, with its position as text (xid8, bigint). */
export type PageRow = Pick<SignalRow, 'id' | 'type' | 'subject' | 'payload' | 'actor' | 'source' | 'correlation_id' | 'causation_id' | 'trace'> & {
  tx_id: string;
  seq: string;
};

export interface Subscription {
  handler: Pick<RegisteredHandler, 'id' | 'ordered' | 'matches'>;
  /** The checkpoint: the last position this subscription has seen. */
  position: Position;
}

/**
 * One `handle_signal` job per (signal past a subscription's checkpoint,
 * handler that matches it), in page order; and the handlers whose
 * checkpoints the page's last signal moves forward.
 */
export function planDispatch({ orgId, page, subs, newExecutionId }: {
  orgId: string;
  page: readonly PageRow[];
  subs: readonly Subscription[];
  newExecutionId: () => string;
}): { jobs: JobSpec[]; advanced: string[] } {
  const jobs: JobSpec[] = [];
  for (const signal of page) {
    const position = { tx: BigInt(signal.tx_id), seq: BigInt(signal.seq) };
    for (const sub of subs) {
      if (compare(position, sub.position) <= 0 || !sub.handler.matches(signal)) continue;
      jobs.push({
        identifier: HANDLE_SIGNAL,
        payload: { org_id: orgId, handler: sub.handler.id, signal_id: signal.id, execution_id: newExecutionId(), attempt: 1, traceparent: signal.trace },
        queue_name: sub.handler.ordered ? orderedQueueName(orgId, sub.handler.id, signal.subject) : null,
      });
    }
  }
  const last = page[page.length - 1];
  const end = last ? { tx: BigInt(last.tx_id), seq: BigInt(last.seq) } : undefined;
  const advanced = end ? subs.filter((sub) => compare(sub.position, end) < 0).map((sub) => sub.handler.id) : [];
  return { jobs, advanced };
}

/** An ISO timestamp with microseconds, which Date cannot carry. */
function microsecondIso(us: bigint): string {
  return new Date(Number(us / 1000n)).toISOString().replace('Z', `${(us % 1000n).toString().padStart(3, '0')}Z`);
}

/**
 * graphile-worker takes a queue's next job by (priority, run_at) with no
 * tie-break: jobs of one add_jobs call share run_at and would run in heap
 * order. Ordered jobs get strictly increasing run_at instead, counted in
 * microseconds from `clockUs` (read under the subscription locks); the
 * previous pass spent more than a microsecond per job before committing, so
 * its jobs stay ahead of this pass's.
 */
export function stampOrdered(jobs: JobSpec[], clockUs: bigint): void {
  let us = clockUs;
  for (const job of jobs) if (job.queue_name) job.run_at = microsecondIso(us++);
}
