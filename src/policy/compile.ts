/**
 * Turning a stored or submitted policy into something `decide` can run: the
 * document is validated whole and every `when` compiled, so a bad policy is
 * refused on write with every problem listed, never discovered per directive.
 */
import { DomainError, type FieldError } from '../core/errors.ts';
import { compileCondition, type Condition } from './cel.ts';
import { PolicyDocument } from './model.ts';

export interface CompiledPolicy {
  readonly document: PolicyDocument;
  /** Aligned with `document.rules`; null where a rule has no `when`. */
  readonly conditions: readonly (Condition | null)[];
}

/**
 * Validates and compiles a policy document.
 *
 * `stored: true` is for a document already accepted: a condition that no
 * longer compiles (the CEL limits were tightened after it was written) fails
 * closed at every decision, with its compile error as the reason, instead of
 * making every proposal of the org fail.
 * @throws DomainError `validation_failed` with one error per bad field or
 *   expression; CEL errors are at `rules.N.when` and name line, column and offset.
 */
export function compilePolicy(input: unknown, { stored = false }: { stored?: boolean } = {}): CompiledPolicy {
  const parsed = PolicyDocument.safeParse(input);
  if (!parsed.success) {
    throw new DomainError(
      'validation_failed',
      'the policy is not valid',
      parsed.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })),
    );
  }
  const document = parsed.data;
  const errors: FieldError[] = [];
  const conditions = document.rules.map((rule, index) => {
    if (rule.when === undefined) return null;
    const compiled = compileCondition(rule.when);
    if (compiled.ok) return compiled.condition;
    if (stored) return failingCondition(compiled.message);
    errors.push({ path: `rules.${index}.when`, message: compiled.message });
    return null;
  });
  if (errors.length > 0) throw new DomainError('validation_failed', 'the policy is not valid', errors);
  return { document, conditions };
}

function failingCondition(message: string): Condition {
  const failure = Object.assign(new Error(message), { summary: message });
  return () => {
    throw failure;
  };
}

/** What an org without a stored policy gets: no rules, so everything is denied. */
export const EMPTY_POLICY: CompiledPolicy = Object.freeze(compilePolicy({ rules: [] }));
