-- Circuit breakers per endpoint of executors that declare one (webhook.post):
-- the fold of the endpoint's outcomes on execution signals and its
-- webhook.endpoint.* transitions.
CREATE TABLE circuits (
  id         text        PRIMARY KEY,
  state      text        NOT NULL,
  failures   integer     NOT NULL,
  retry_at   timestamptz,
  updated_at timestamptz NOT NULL
);
