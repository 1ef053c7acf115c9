-- The entities projection, folded from signals by installed packages' manifest
-- `projections` rules (src/packages/entity-projection.ts). `id` is
-- `<type>:<key>` (a type has no colon). A row names its last signal by id, not
-- by log position, so `orgs import` keeps checksums equal; the API reads the
-- position by joining the signals table. Rows of type `$installation` are the
-- projection's own record of which installations were live at each signal,
-- folded from installation.* signals: a rebuild of this table alone therefore
-- refolds every signal with the installations live when it was written.
CREATE TABLE entities (
  id             text    PRIMARY KEY,
  type           text    NOT NULL,
  key            text    NOT NULL,
  fields         jsonb   NOT NULL,
  version        integer NOT NULL,
  tombstone      boolean NOT NULL,
  last_signal_id text    NOT NULL
);
CREATE UNIQUE INDEX entities_type_key ON entities (type, key);
