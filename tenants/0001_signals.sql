-- The tenant's log. Runs with search_path set (SET LOCAL) to the tenant schema.
-- Rows are never updated or deleted: the triggers below refuse it.

CREATE TABLE signals (
  -- Commit-ordered position = (tx_id, seq). Readers only read rows whose
  -- tx_id is below pg_snapshot_xmin(pg_current_snapshot()): every transaction
  -- below that horizon has ended, so no row can later appear behind a reader.
  tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
  seq             bigint      GENERATED ALWAYS AS IDENTITY,
  id              text        PRIMARY KEY,
  type            text        NOT NULL,
  schema_version  integer     NOT NULL DEFAULT 1,
  subject         text,
  payload         jsonb       NOT NULL,
  actor           jsonb       NOT NULL,
  source          text        NOT NULL,
  dedupe_key      text        NOT NULL,
  payload_hash    text        NOT NULL,
  correlation_id  text,
  causation_id    text,
  causation_depth integer     NOT NULL DEFAULT 0,
  installation_id text,
  trace           text,
  occurred_at     timestamptz NOT NULL,
  recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE UNIQUE INDEX signals_dedupe_key ON signals (dedupe_key);
CREATE UNIQUE INDEX signals_position ON signals (tx_id, seq);
CREATE INDEX signals_type_position ON signals (type, tx_id, seq);
CREATE INDEX signals_subject_position ON signals (subject, tx_id, seq) WHERE subject IS NOT NULL;
CREATE INDEX signals_correlation_position ON signals (correlation_id, tx_id, seq) WHERE correlation_id IS NOT NULL;
CREATE INDEX signals_causation ON signals (causation_id) WHERE causation_id IS NOT NULL;

CREATE FUNCTION refuse_signal_mutation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'signals are immutable: % refused on %.%', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER signals_immutable_rows
  BEFORE UPDATE OR DELETE ON signals
  FOR EACH ROW EXECUTE FUNCTION refuse_signal_mutation();

CREATE TRIGGER signals_immutable_truncate
  BEFORE TRUNCATE ON signals
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_signal_mutation();
