-- The inbound webhook delivery log: one row per delivery to an installation's
-- hook, accepted or not (src/webhooks/delivery-log.ts). Not a projection:
-- rejected deliveries write no signal, so this is the only trace of them.
-- Bounded per installation (the newest SIGNALBUS_HOOK_DELIVERY_LOG_SIZE rows
-- are kept). Never holds a body or a secret: the body's SHA-256 and size only.
CREATE TABLE webhook_deliveries (
  id              text        PRIMARY KEY,
  installation_id text        NOT NULL,
  received_at     timestamptz NOT NULL,
  status          integer     NOT NULL,
  outcome         text        NOT NULL,
  reason          text,
  detail          text,
  body_sha256     text,
  body_bytes      integer,
  event_id        text,
  signal_id       text
);
CREATE INDEX webhook_deliveries_installation ON webhook_deliveries (installation_id, id DESC);
