-- The installations projection, folded from installation.* signals
-- (src/packages/installation-model.ts). Only its reducer writes it; a
-- rebuild refolds it from the log. `position` is the log position of the
-- last signal folded into the row.
CREATE TABLE installations (
  id            text        PRIMARY KEY,
  package       text        NOT NULL,
  version       text        NOT NULL,
  config        jsonb       NOT NULL,
  secrets       jsonb       NOT NULL,
  status        text        NOT NULL,
  pending       jsonb,
  steps         jsonb       NOT NULL,
  error         jsonb,
  backfill_from text,
  created_by    jsonb       NOT NULL,
  created_at    timestamptz NOT NULL,
  updated_at    timestamptz NOT NULL,
  position      text        NOT NULL
);
-- The live set (handlers, payload schemas, hooks) is read often and is small.
CREATE INDEX installations_active ON installations (package) WHERE status = 'installed';
CREATE INDEX installations_package ON installations (package, status);
