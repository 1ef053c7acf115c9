/**
 * The causation tree of a signal: the handler runs it triggered, what each
 * run derived (signals, directives with their decision and status), and so
 * on down the chain — bounded by the loop guard's depth, and by a node cap
 * so a wide fan-out cannot make one request unbounded.
 */
import type { Queryable, Sql } from '../db/client.ts';
import { readerOf } from '../db/transaction.ts';
import type { VerbCall } from '../signals/verb-context.ts';
import { getDirective } from '../directives/store.ts';
import { getSignal } from '../signals/read.ts';
import type { Signal } from '../signals/model.ts';
import type { Actor } from '../signals/actor.ts';
import type { Tenant } from '../core/tenant.ts';
import { executionIdOfDirective } from '../directives/execute.ts';
import { findExecution, listExecutions, type Execution } from '../executions/read.ts';

export interface TraceDirective {
  id: string;
  kind: string;
  status: string;
  decision: unknown;
  /** Who approved or rejected it, when a person did. */
  decided_by: Actor | null;
  execution: Execution | null;
}

export interface TraceNode {
  signal: Signal;
  executions: Array<Execution & { signals: TraceNode[]; directives: TraceDirective[] }>;
}

export interface Trace {
  root: TraceNode;
  truncated: boolean;
}

export async function traceSignal(db: Queryable, tenant: Tenant, id: string, { maxNodes = 500, maxDepth = 32 } = {}): Promise<Trace> {
  let nodes = 0;
  let truncated = false;
  const visit = async (signal: Signal, depth: number): Promise<TraceNode> => {
    nodes++;
    const { data: executions } = await listExecutions(db, tenant, { signalId: signal.id, limit: 100 });
    const expanded: TraceNode['executions'] = [];
    for (const execution of executions) {
      const signals: TraceNode[] = [];
      const directives: TraceDirective[] = [];
      for (const derivedId of execution.outputs.signals) {
        if (nodes >= maxNodes || depth >= maxDepth) {
          truncated = true;
          break;
        }
        signals.push(await visit(await getSignal(db, tenant, derivedId), depth + 1));
      }
      for (const directiveId of execution.outputs.directives) {
        const directive = await getDirective(db, tenant, directiveId);
        directives.push({
          id: directive.id,
          kind: directive.kind,
          status: directive.status,
          decision: directive.decision,
          decided_by: directive.decided_by,
          execution: (await findExecution(db, tenant, executionIdOfDirective(directive.id))) ?? null,
        });
      }
      expanded.push({ ...execution, signals, directives });
    }
    return { signal, executions: expanded };
  };
  const root = await visit(await getSignal(db, tenant, id), 0);
  return { root, truncated };
}

/** The trace verb behind `GET …/signals/{id}/trace`: in the caller's transaction when it has one. */
export function showTrace(deps: { sql: Sql }, { ctx, input }: VerbCall<{ id: string }>): Promise<Trace> {
  return traceSignal(readerOf(deps.sql, ctx.tx), ctx.tenant, input.id);
}
