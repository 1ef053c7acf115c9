/**
 * directives — intents to cause a side effect: proposal (policy decides, in
 * the proposal's transaction), human decisions, expiry, and the execute job
 * that alone hands an approved directive to its executor. Every transition is
 * a `directive.*` signal; the directives table is their projection. Callers
 * pass `tx` to join their transaction. The policy's database side lives here
 * too — its projection, its update verb, the guards' usage counts — so that
 * `src/policy` stays pure.
 */
export { proposeDirective, simulateDirective, type ProposalCause, type ProposeResult } from './propose.ts';
export { decideDirective, expireDirective, type DirectiveAction } from './transitions.ts';
export { executeDirective, executionIdOfDirective } from './execute.ts';
export { getDirective, listDirectives, type Directive } from './store.ts';
export { directivesProjection } from './projection.ts';
export type { DirectiveDeps } from './deps.ts';
export { policiesProjection } from './policy-projection.ts';
export { createPolicyCompiler, getPolicy, updatePolicy, type PolicyCompiler, type PolicyView } from './policy-store.ts';
