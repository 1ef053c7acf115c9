-- The hash of every client-supplied field of the request that stored a
-- signal, so a repeated dedupe key with any other field is a conflict, not a
-- silent duplicate. Nullable and without a default: adding it rewrites
-- nothing, and rows stored before it are hashed from their columns when
-- compared (signals are immutable, so they are never backfilled).
ALTER TABLE signals ADD COLUMN request_hash text;
