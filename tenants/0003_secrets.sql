-- The credentials vault. Not a projection, and kept out of the log on
-- purpose (ARCHITECTURE.md, exceptions): values are sealed here and nowhere
-- else. `owner` is 'org' for the org's own secrets, or an installation id.
CREATE TABLE secrets (
  owner       text        NOT NULL,
  name        text        NOT NULL,
  kid         text        NOT NULL,
  wrapped_key bytea       NOT NULL,
  ciphertext  bytea       NOT NULL,
  fingerprint text        NOT NULL,
  last4       text        NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (owner, name)
);
CREATE INDEX secrets_kid ON secrets (kid);
