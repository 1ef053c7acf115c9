-- Replays: the projection of `replay.*` signals (src/replay). Like every
-- projection it holds nothing its reducer could not derive from the log, so
-- no now() defaults. It is replay's own bookkeeping: folded live, never
-- rebuilt by a replay (a rebuild would chase its own progress signals).
CREATE TABLE replays (
  id           text        PRIMARY KEY,
  mode         text        NOT NULL,
  status       text        NOT NULL,
  reason       text        NOT NULL,
  actor        jsonb       NOT NULL,
  request      jsonb       NOT NULL,
  -- What a concurrent replay of the same mode may not share (projections, handlers).
  scope        jsonb       NOT NULL,
  processed    bigint      NOT NULL,
  total        bigint,
  checkpoint   jsonb,
  checkpoints  integer     NOT NULL,
  report       jsonb,
  error        jsonb,
  requested_at timestamptz NOT NULL,
  started_at   timestamptz,
  progress_at  timestamptz,
  finished_at  timestamptz,
  expires_at   timestamptz,
  dropped_at   timestamptz,
  updated_at   timestamptz NOT NULL
);
CREATE INDEX replays_status ON replays (status, id);
