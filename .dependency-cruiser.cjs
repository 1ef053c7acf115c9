/**
 * The layer rules of ARCHITECTURE.md, checked on every `npm test`:
 * dependencies point inward, policy is pure, executors know no tables,
 * routes call verbs and never the database.
 */
const EDGES = '^src/(http|cli|console|worker)/';
const DOMAIN = '^src/(core|db|tenancy|auth|signals|projections|handlers|executions|directives|policy|executors|secrets|packages|webhooks|replay|telemetry)/';
const DATABASE = ['^src/db/', 'node_modules/(postgres|pg|pg-[a-z-]+|drizzle-orm|graphile-worker)/'];

module.exports = {
  forbidden: [
    {
      name: 'domain-imports-no-edge',
      comment: 'Domain modules never import http, cli, console or worker, nor the composition root: those call the domain.',
      severity: 'error',
      from: { path: DOMAIN, pathNot: '\\.test\\.ts$' },
      to: { path: [EDGES, '^src/app\\.ts$'] },
    },
    {
      name: 'policy-is-pure',
      comment: 'src/policy decides from its arguments: no database, no log, no other domain folder (its database side lives in src/directives).',
      severity: 'error',
      from: { path: '^src/policy/' },
      to: { path: [...DATABASE, '^src/(?!policy/|core/)[^/]+/'] },
    },
    {
      name: 'executors-know-no-tables',
      comment: 'Executors return results; recording them is the directives’ job.',
      severity: 'error',
      from: { path: '^src/executors/' },
      // The signal model (pure validation of names and payloads) is allowed; the log's writers and readers are not.
      to: { path: [...DATABASE, '^src/signals/(?!model\\.ts$|actor\\.ts$)', '^src/(projections|directives|executions|handlers|tenancy)/'] },
    },
    {
      name: 'routes-call-verbs',
      comment: 'An HTTP operation calls a domain verb; it imports neither drizzle nor the database client.',
      severity: 'error',
      from: { path: '^src/http/routes/' },
      to: { path: DATABASE },
    },
    {
      name: 'no-circular',
      comment: 'Modules import one another one way.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'] },
  },
};
