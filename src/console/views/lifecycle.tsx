/**
 * Pieces the directive and execution pages share: a lifecycle history (the
 * signals that moved a directive or an execution, each linked to its page)
 * and a table of executions with, for an operator, a retry on failed ones.
 */
import type { ConsoleSession } from '../../auth/sessions.ts';
import type { Execution } from '../../executions/read.ts';
import type { Signal } from '../../signals/model.ts';
import { Csrf, DataTable, Time } from '../layout.tsx';

/** What a lifecycle signal adds besides its type: attempt, reason, error, cost. */
export function lifecycleDetail(signal: Signal): string {
  const payload = signal.payload as {
    attempt?: number; reason?: string | null; error?: { code?: string; message?: string } | null;
    cost_usd?: number | null; duration_ms?: number; final?: boolean; retry_at?: string | null; usage?: { cost_usd?: number };
  };
  const parts: string[] = [];
  if (typeof payload.attempt === 'number') parts.push(`attempt ${payload.attempt}`);
  if (typeof payload.duration_ms === 'number') parts.push(`${payload.duration_ms} ms`);
  if (payload.error) parts.push(`${payload.error.code ?? 'error'}: ${payload.error.message ?? ''}`);
  if (payload.final === false && payload.retry_at) parts.push(`retry at ${payload.retry_at}`);
  const cost = payload.cost_usd ?? payload.usage?.cost_usd;
  if (typeof cost === 'number') parts.push(`cost ${cost.toFixed(4)} USD`);
  if (payload.reason) parts.push(`reason: ${payload.reason}`);
  return parts.join(' · ');
}

export function History({ org, signals, label }: { org: string; signals: Signal[]; label: string }) {
  if (signals.length === 0) return <p>No lifecycle signals are recorded yet.</p>;
  return (
    <DataTable columns={['Recorded', 'Signal', 'By', 'Detail']} label={label}>
      {signals.map((signal) => (
        <tr>
          <td><Time value={signal.recorded_at} /></td>
          <td><a href={`/console/orgs/${org}/signals/${signal.id}`}>{signal.type}</a></td>
          <td>{signal.actor.id}</td>
          <td>{lifecycleDetail(signal)}</td>
        </tr>
      ))}
    </DataTable>
  );
}

/** A handler run can be retried from the console; an executor run is retried by proposing its directive again. */
export const retryable = (execution: Execution) => execution.status === 'failed' && execution.signal_id !== null;

export function RetryForm({ org, execution, session, back }: { org: string; execution: Execution; session: ConsoleSession; back: 'list' | 'execution' }) {
  return (
    <form method="post" action={`/console/orgs/${org}/executions/${execution.id}/retry`}>
      <Csrf session={session} />
      <input type="hidden" name="back" value={back} />
      <button type="submit" aria-label={`Retry ${execution.id}`}>Retry</button>
    </form>
  );
}

export function ExecutionTable({ org, executions, retry }: { org: string; executions: Execution[]; retry?: ConsoleSession | undefined }) {
  if (executions.length === 0) return <p>No executions match.</p>;
  return (
    <DataTable columns={['Started', 'Execution', 'Status', 'Attempts', 'Cost (USD)', 'Error', 'Input', ...(retry ? [{ hidden: 'Actions' }] : [])]}>
      {executions.map((execution) => (
        <tr>
          <td><Time value={execution.started_at} /></td>
          <td><a href={`/console/orgs/${org}/executions/${execution.id}`}>{execution.handler}</a> <code>{execution.id}</code></td>
          <td><span class={`status ${execution.status}`}>{execution.status}</span></td>
          <td>{execution.attempts}</td>
          <td>{execution.cost_usd !== null ? execution.cost_usd.toFixed(4) : ''}</td>
          <td>{execution.error ? `${execution.error.code}: ${execution.error.message}` : ''}</td>
          <td><InputLink org={org} execution={execution} /></td>
          {retry ? <td>{retryable(execution) ? <RetryForm org={org} execution={execution} session={retry} back="list" /> : null}</td> : null}
        </tr>
      ))}
    </DataTable>
  );
}

/** What the execution ran on: its input signal, or the directive it executed. */
export function InputLink({ org, execution }: { org: string; execution: Execution }) {
  if (execution.signal_id) return <a href={`/console/orgs/${org}/signals/${execution.signal_id}`}>{`signal ${execution.signal_id}`}</a>;
  if (execution.directive_id) return <a href={`/console/orgs/${org}/directives/${execution.directive_id}`}>{`directive ${execution.directive_id}`}</a>;
  return <span>—</span>;
}
