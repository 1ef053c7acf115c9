-- Circuit breakers per endpoint of executors that declare one (webhook.post):
-- the fold of the endpoint's outcomes on execution signals and its
-- webhook.endpoint.* transitions, by signal position (see circuit.ts).
CREATE TABLE circuits (
  id                  text        PRIMARY KEY,
  state               text        NOT NULL,
  failures            integer     NOT NULL,
  retry_at            timestamptz,
  transition_position text,
  healthy_position    text,
  fault_positions     jsonb       NOT NULL,
  position            text        NOT NULL,
  updated_at          timestamptz NOT NULL
);
