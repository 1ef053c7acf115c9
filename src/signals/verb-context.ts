/**
 * The one context every verb takes, reads included: `verb(deps, { ctx, input })`.
 * It says who acts (tenant, actor), where the call entered (source, request
 * id, trace), and — when given — the caller's transaction, which every write
 * joins through `withTransaction(deps.sql, ctx.tx, …)` so verbs compose into
 * one transaction.
 */
import type { Tenant } from '../core/tenant.ts';
import type { Tx } from '../db/transaction.ts';
import type { Actor } from './actor.ts';

export interface VerbContext {
  tenant: Tenant;
  actor: Actor;
  /** Where the call entered: `api`, `webhook:<package>`, `handler:<id>`, `system`, `cli`. */
  source: string;
  traceparent?: string | null;
  /** The HTTP request's id (or the job's), for logs and problem responses. */
  requestId?: string | null;
  /** Set when a package installation acts. */
  installationId?: string | null;
  /** The caller's transaction; absent, a writing verb opens its own. */
  tx?: Tx;
}

/** The input of a verb that needs none beyond its context. */
export type NoInput = Record<string, never>;

/** A verb's argument: its context and its input. */
export interface VerbCall<Input> {
  ctx: VerbContext;
  input: Input;
}
