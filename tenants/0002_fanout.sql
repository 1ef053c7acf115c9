-- Fan-out: subscription checkpoints, and the directives, executions and
-- policies projections. Projection tables are written only by their reducers
-- (src/projections) and hold nothing a reducer could not derive from the log:
-- no now() defaults, so a rebuild reproduces them row for row.

-- One row per (org × handler): how far the dispatcher has enqueued. This is
-- dispatcher bookkeeping, like graphile-worker's own tables, not a projection.
CREATE TABLE subscriptions (
  handler    text        PRIMARY KEY,
  tx_id      xid8        NOT NULL,
  seq        bigint      NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE directives (
  id                 text        PRIMARY KEY,
  kind               text        NOT NULL,
  params             jsonb       NOT NULL,
  idempotency_key    text        NOT NULL,
  actor              jsonb       NOT NULL,
  causation_id       text,
  correlation_id     text,
  installation_id    text,
  status             text        NOT NULL,
  decision           jsonb       NOT NULL,
  estimated_cost_usd numeric     NOT NULL,
  cost_usd           numeric,
  result             jsonb,
  error              jsonb,
  attempts           integer     NOT NULL,
  expires_at         timestamptz,
  decided_by         jsonb,
  decision_reason    text,
  proposed_at        timestamptz NOT NULL,
  updated_at         timestamptz NOT NULL
);
CREATE UNIQUE INDEX directives_idempotency_key ON directives (idempotency_key);
CREATE INDEX directives_status ON directives (status, id);
-- Rate limits and budgets count recent directives of a kind.
CREATE INDEX directives_kind_proposed ON directives (kind, proposed_at);
CREATE INDEX directives_causation ON directives (causation_id) WHERE causation_id IS NOT NULL;

CREATE TABLE executions (
  id           text        PRIMARY KEY,
  handler      text        NOT NULL,
  signal_id    text,
  directive_id text,
  status       text        NOT NULL,
  attempts     integer     NOT NULL,
  started_at   timestamptz,
  finished_at  timestamptz,
  duration_ms  integer,
  error        jsonb,
  outputs      jsonb       NOT NULL,
  tokens_in    integer,
  tokens_out   integer,
  cost_usd     numeric,
  updated_at   timestamptz NOT NULL
);
CREATE INDEX executions_status ON executions (status, id);
CREATE INDEX executions_handler ON executions (handler, id);
CREATE INDEX executions_signal ON executions (signal_id) WHERE signal_id IS NOT NULL;
CREATE INDEX executions_directive ON executions (directive_id) WHERE directive_id IS NOT NULL;

-- At most one row: the org's current policy document.
CREATE TABLE policies (
  id         text        PRIMARY KEY CHECK (id = 'current'),
  version    integer     NOT NULL,
  rules      jsonb       NOT NULL,
  guards     jsonb       NOT NULL,
  updated_by jsonb       NOT NULL,
  updated_at timestamptz NOT NULL
);
