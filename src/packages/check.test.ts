import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtinExecutors } from '../executors/builtin.ts';
import { createExecutorRegistry } from '../executors/registry.ts';
import { compileManifestCel } from './cel.ts';
import { checkManifest, type CheckContext } from './check.ts';

const SHIPPED = path.resolve(import.meta.dirname, '../../packages-registry');
const executors = createExecutorRegistry(builtinExecutors({ allowPrivateTargets: false }));
const context: CheckContext = { executors, versionsOf: (name) => (name === 'base-kit' ? ['1.2.0', '2.0.0'] : undefined) };

/** A small manifest using every section; each case below breaks one thing. */
function good(): Record<string, any> {
  return {
    name: 'demo-kit',
    version: '1.0.0',
    description: 'A demo',
    requires: { 'base-kit': '^1.0.0' },
    config: { type: 'object', properties: { limit: { type: 'integer' }, url: { type: 'string', format: 'uri' } }, required: ['limit'] },
    secrets: [{ name: 'hook_secret', description: 'signs deliveries' }],
    scopes: ['stripe.refund.create', 'webhook.post'],
    signals: [{ type: 'demo.thing.happened', payload: { type: 'object', properties: { n: { type: 'integer' } } } }],
    webhook: {
      scheme: 'hmac',
      secret: 'hook_secret',
      signature: { header: 'X-Sig' },
      event: { id: 'string(body.id)', type: "'demo.thing.happened'", occurred_at: 'body.at', payload: "{'n': body.n}" },
    },
    handlers: [
      {
        id: 'refund',
        on: ['demo.*'],
        when: 'signal.payload.n > config.limit',
        propose: { kind: 'stripe.refund.create', params: { charge: 'signal.payload.charge', amount: 'signal.payload.n' }, key: "'r'" },
      },
      { id: 'echo', on: ['other.thing.seen'], emit: { type: 'demo.thing.happened', payload: { n: 'signal.payload.n' }, subject: 'signal.subject' } },
    ],
    policies: [{ id: 'big', match: 'stripe.*', when: 'params.amount > 100', effect: 'require_approval' }],
    projections: [{ type: 'demo.thing', on: ['demo.thing.happened'], key: 'string(signal.payload.n)', fields: { n: 'signal.payload.n' }, tombstone_on: ['demo.thing.gone'] }],
    steps: [{ id: 'hello', when: "has(config.url)", propose: { kind: 'webhook.post', params: { url: 'config.url', body: "{'hello': installation.id}" } } }],
  };
}

function errorsOf(manifest: unknown) {
  const result = checkManifest(manifest, context);
  return result.ok ? [] : result.errors;
}

describe('checkManifest', () => {
  it('accepts a manifest using every section, with defaults applied', () => {
    const result = checkManifest(good(), context);
    expect(result.ok ? [] : result.errors).toEqual([]);
    if (!result.ok) return;
    expect(result.manifest.multiple_installations).toBe(false);
    expect(result.manifest.handlers[0]!.ordered).toBe(false);
    expect(result.manifest.webhook?.scheme === 'hmac' && result.manifest.webhook.signature).toEqual({ header: 'X-Sig', algorithm: 'sha256', encoding: 'hex', prefix: '' });
  });

  it('accepts the shipped packages', () => {
    for (const name of ['stripe-revenue', 'webhook-relay']) {
      const raw = JSON.parse(readFileSync(path.join(SHIPPED, name, '1.0.0', 'manifest.json'), 'utf8'));
      expect(errorsOf(raw), name).toEqual([]);
    }
  });

  // [what breaks, how, the path reported, a fragment of its message]
  const cases: Array<[string, (m: Record<string, any>) => void, string, string | RegExp]> = [
    ['a version that is not semver', (m) => (m.version = 'v1.0'), 'version', 'semantic version'],
    ['an unknown top-level field', (m) => (m.handler = []), '', 'handler'],
    ['a rule with both outputs', (m) => (m.handlers[1].propose = m.handlers[0].propose), 'handlers.1.propose', 'exactly one'],
    ['a CEL syntax error', (m) => (m.handlers[0].when = 'signal.payload.n >'), 'handlers.0.when', 'at line 1, column 19'],
    ['an unknown CEL variable', (m) => (m.handlers[0].when = 'sgnal.type == "x"'), 'handlers.0.when', /Unknown variable: sgnal at line 1, column 1/],
    ['a misspelt signal field', (m) => (m.handlers[0].when = 'signal.paylod.n > 1'), 'handlers.0.when', 'No such key: paylod at line 1, column'],
    ['a misspelt installation field', (m) => (m.steps[0].propose.params.body = "{'id': installation.ident}"), 'steps.0.propose.params.body', 'No such key: ident'],
    ['a non-boolean condition', (m) => (m.handlers[0].when = "'yes'"), 'handlers.0.when', 'must evaluate to bool, not string'],
    ['a CEL error in a param', (m) => (m.handlers[0].propose.params.amount = '1 + "a"'), 'handlers.0.propose.params.amount', 'no such overload'],
    ['config in a projection (not a fold of the log)', (m) => (m.projections[0].fields.n = 'config.limit'), 'projections.0.fields.n', 'Unknown variable: config'],
    ['signal in an install step', (m) => (m.steps[0].when = "signal.type == 'x'"), 'steps.0.when', 'Unknown variable: signal'],
    ['a webhook reading an unknown variable', (m) => (m.webhook.event.id = 'request.id'), 'webhook.event.id', 'Unknown variable: request'],
    ['pubsub data outside google-pubsub', (m) => (m.webhook.event.payload = 'data'), 'webhook.event.payload', 'Unknown variable: data'],
    ['a policy condition in error', (m) => (m.policies[0].when = 'signal.x'), 'policies.0.when', 'Unknown variable: signal'],
    ['an unknown directive kind in scopes', (m) => m.scopes.push('stripe.payout.create'), 'scopes.2', 'no executor serves directive kind stripe.payout.create'],
    ['a proposal outside the scopes', (m) => (m.scopes = ['webhook.post']), 'handlers.0.propose.kind', 'not among the package'],
    ['a param the kind does not have', (m) => (m.handlers[0].propose.params.amonut = '1'), 'handlers.0.propose.params.amonut', 'has no param amonut'],
    ['an emit of an undeclared type', (m) => (m.handlers[1].emit.type = 'demo.other.happened'), 'handlers.1.emit.type', 'not among the package'],
    ['a reserved signal type', (m) => (m.signals[0].type = 'directive.hacked'), 'signals.0.type', 'signalbus itself emits'],
    ['a config schema with a misspelt keyword', (m) => (m.config.requird = ['limit']), 'config', 'unknown keyword: "requird"'],
    ['a config schema that is not an object', (m) => (m.config = { type: 'string' }), 'config.type', 'must describe an object'],
    ['an invalid payload schema', (m) => (m.signals[0].payload = { type: 'objet' }), 'signals.0.payload', 'schema is invalid'],
    ['a webhook secret not declared', (m) => (m.webhook.secret = 'other'), 'webhook.secret', 'not among the package'],
    ['a policy matching every kind', (m) => (m.policies[0].match = '*'), 'policies.0.match', "one of the package's scopes"],
    ['a policy outside the scopes', (m) => (m.policies[0].match = 'gmail.send'), 'policies.0.match', "one of the package's scopes"],
    ['a policy id too long once installed', (m) => (m.policies[0].id = 'x'.repeat(60)), 'policies.0.id', 'longer than 63'],
    ['duplicate rule ids', (m) => (m.handlers[1].id = 'refund'), 'handlers.1.id', 'duplicate refund'],
    ['a requires range that is not semver', (m) => (m.requires['base-kit'] = 'latest'), 'requires.base-kit', 'not a semver range'],
    ['an unmet requires', (m) => (m.requires['base-kit'] = '^3.0.0'), 'requires.base-kit', 'no published version of base-kit satisfies ^3.0.0'],
    ['requiring an unpublished package', (m) => (m.requires['ghost-kit'] = '*'), 'requires.ghost-kit', 'no package ghost-kit is published'],
    ['requiring itself', (m) => (m.requires['demo-kit'] = '*'), 'requires.demo-kit', 'cannot require itself'],
  ];
  for (const [what, change, path, message] of cases) {
    it(`refuses ${what} at ${path || 'the root'}`, () => {
      const manifest = good();
      change(manifest);
      const errors = errorsOf(manifest);
      expect(errors.length, JSON.stringify(errors)).toBeGreaterThan(0);
      const error = errors.find((item) => item.path === path);
      expect(error, `${path} in ${JSON.stringify(errors)}`).toBeDefined();
      if (typeof message === 'string') expect(error!.message).toContain(message);
      else expect(error!.message).toMatch(message);
    });
  }

  it('lists every problem at once', () => {
    const manifest = good();
    manifest.handlers[0].when = 'nope(';
    manifest.scopes.push('nope.kind');
    expect(errorsOf(manifest).map((error) => error.path).sort()).toEqual(['handlers.0.when', 'scopes.2']);
  });
});

describe('compileManifestCel', () => {
  it('reports line and column on multi-line expressions', () => {
    const compiled = compileManifestCel("signal.type == 'a' &&\n  sgnal.payload", 'handler', 'bool');
    expect(compiled.ok).toBe(false);
    if (!compiled.ok) expect([compiled.line, compiled.column]).toEqual([2, 3]);
  });

  it('compiles to a program over the scope variables', () => {
    const compiled = compileManifestCel("'stripe.' + body.type", 'webhook', 'string');
    expect(compiled.ok && compiled.program({ body: { type: 'charge.refunded' }, headers: {}, config: {} })).toBe('stripe.charge.refunded');
  });
});
