/**
 * Policies: the rules and guards as an editable document, checked on the
 * server (CEL errors shown under the expression at their line and column)
 * before anything is saved, and a simulate form answering what policy would
 * decide for a kind and params now.
 */
import type { Hono } from 'hono';
import type { ConsoleSession } from '../../auth/sessions.ts';
import { DomainError, type FieldError } from '../../core/errors.ts';
import { showPolicy, updatePolicy } from '../../directives/policy-store.ts';
import { simulateDirective, type Simulation } from '../../directives/propose.ts';
import { compilePolicy } from '../../policy/compile.ts';
import { formOf, may, need, tenantOf, verbContextOf, type ConsoleContext, type ConsoleEnv } from '../guard.ts';
import { Csrf, Json, Page } from '../layout.tsx';
import { noticeText, withNotice } from '../notices.ts';

interface EditorState {
  text: string;
  errors?: FieldError[];
  checked?: string;
  simulation?: Simulation;
  simulateInput?: { kind: string; params: string };
  simulateError?: string;
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new DomainError('validation_failed', `${path} is not JSON`, [{ path, message: (error as Error).message }]);
  }
}

/** The expression's line with a caret under the column a CEL error names. */
function ErrorAt({ error, document }: { error: FieldError; document: unknown }) {
  const rule = /^rules\.(\d+)\.when$/.exec(error.path);
  const at = /line (\d+), column (\d+)/.exec(error.message);
  const when = rule ? (document as { rules?: Array<{ when?: unknown }> })?.rules?.[Number(rule[1])]?.when : undefined;
  const line = typeof when === 'string' && at ? when.split('\n')[Number(at[1]) - 1] : undefined;
  return (
    <li>
      <code>{error.path}</code>: {error.message}
      {line !== undefined && at ? <pre class="caret" aria-label={`at line ${at[1]}, column ${at[2]}`}>{`${line}\n${' '.repeat(Math.max(0, Number(at[2]) - 1))}^`}</pre> : null}
    </li>
  );
}

function PolicyPage({ c, session, state, version }: { c: ConsoleContext; session: ConsoleSession; state: EditorState; version: number }) {
  const org = tenantOf(c).slug;
  const admin = may(c, 'org:admin');
  let document: unknown;
  try {
    document = JSON.parse(state.text);
  } catch {
    document = undefined;
  }
  return (
    <Page title="Policies" session={session} org={org} current="policies" notice={noticeText(c.req.query('notice'))}>
      <p>Version {version}. Rules are ordered; deny beats require_approval beats allow; with no matching allow rule a directive is denied.</p>
      {state.errors ? (
        <section class="error" role="alert" aria-labelledby="policy-errors">
          <h2 id="policy-errors">The policy is not valid</h2>
          <ul>{state.errors.map((error) => <ErrorAt error={error} document={document} />)}</ul>
        </section>
      ) : null}
      {state.checked ? <p class="notice" role="status">{state.checked}</p> : null}
      <form method="post" action={`/console/orgs/${org}/policies`} class="stack">
        <Csrf session={session} />
        <label for="policy-document">Policy document (JSON: rules and guards)</label>
        <textarea id="policy-document" name="document" rows={18} spellcheck={false} readonly={!admin}>{state.text}</textarea>
        <div class="actions">
          <button type="submit" name="intent" value="check">Check</button>
          {admin ? <button type="submit" name="intent" value="save">Save</button> : null}
        </div>
      </form>
      {may(c, 'org:operate') ? (
        <section aria-labelledby="simulate-heading">
          <h2 id="simulate-heading">Simulate</h2>
          <form method="post" action={`/console/orgs/${org}/policies/simulate`} class="stack">
            <Csrf session={session} />
            <label for="simulate-kind">Kind</label>
            <input id="simulate-kind" name="kind" required value={state.simulateInput?.kind ?? ''} placeholder="gmail.send" />
            <label for="simulate-params">Params (JSON)</label>
            <textarea id="simulate-params" name="params" rows={5} spellcheck={false}>{state.simulateInput?.params ?? '{}'}</textarea>
            <button type="submit">Simulate</button>
          </form>
          {state.simulateError ? <p class="error" role="alert">{state.simulateError}</p> : null}
          {state.simulation ? (
            <dl class="facts" aria-label="Simulation result">
              <dt>Decision</dt><dd class="decision">{state.simulation.decision}</dd>
              <dt>Rule</dt><dd>{state.simulation.rule ?? 'none (default deny)'}</dd>
              <dt>Reason</dt><dd>{state.simulation.reason}</dd>
              <dt>Estimated cost</dt><dd>${state.simulation.estimated_cost_usd.toFixed(4)}</dd>
              <dt>Guards</dt><dd><Json value={state.simulation.guards} /></dd>
            </dl>
          ) : null}
        </section>
      ) : null}
    </Page>
  );
}

async function currentText(c: ConsoleContext): Promise<{ text: string; version: number }> {
  const policy = await showPolicy(c.get('deps').bus.directives, { ctx: verbContextOf(c), input: {} });
  return { text: JSON.stringify({ rules: policy.rules, guards: policy.guards }, null, 2), version: policy.version };
}

function validationErrors(error: unknown): FieldError[] | undefined {
  if (error instanceof DomainError && error.code === 'validation_failed') return error.errors ?? [{ path: '', message: error.message }];
  return undefined;
}

export function registerPolicies(app: Hono<ConsoleEnv>): void {
  app.get('/orgs/:org/policies', async (c) => {
    const session = need(c, 'org:read');
    const { text, version } = await currentText(c);
    return c.html(<PolicyPage c={c} session={session} state={{ text }} version={version} />);
  });

  app.post('/orgs/:org/policies', async (c) => {
    const form = formOf(c);
    const text = form.document ?? '';
    const session = need(c, form.intent === 'save' ? 'org:admin' : 'org:read');
    const { version } = await currentText(c);
    try {
      const document = parseJson(text, 'document');
      if (form.intent === 'save') {
        await updatePolicy(c.get('deps').bus.emit, { ctx: verbContextOf(c), input: document });
        return c.redirect(withNotice(`/console/orgs/${tenantOf(c).slug}/policies`, 'policy_saved'), 303);
      }
      const { document: checked } = compilePolicy(document);
      return c.html(<PolicyPage c={c} session={session} state={{ text, checked: `No errors: ${checked.rules.length} rules compile. Not saved yet.` }} version={version} />);
    } catch (error) {
      const errors = validationErrors(error);
      if (!errors) throw error;
      return c.html(<PolicyPage c={c} session={session} state={{ text, errors }} version={version} />, 422);
    }
  });

  app.post('/orgs/:org/policies/simulate', async (c) => {
    const session = need(c, 'org:operate');
    const form = formOf(c);
    const simulateInput = { kind: form.kind ?? '', params: form.params ?? '{}' };
    const { text, version } = await currentText(c);
    try {
      const params = parseJson(simulateInput.params, 'params');
      const simulation = await simulateDirective(c.get('deps').bus.directives, { ctx: verbContextOf(c), input: { kind: simulateInput.kind, params } });
      return c.html(<PolicyPage c={c} session={session} state={{ text, simulation, simulateInput }} version={version} />);
    } catch (error) {
      const errors = validationErrors(error);
      if (!errors) throw error;
      const simulateError = errors.map((item) => `${item.path || 'input'}: ${item.message}`).join('; ');
      return c.html(<PolicyPage c={c} session={session} state={{ text, simulateInput, simulateError }} version={version} />, 422);
    }
  });
}
