-- Console pages filter the log by recording time ("since"). Rows are appended,
-- so recorded_at follows the table's physical order closely and a BRIN index
-- (a few pages for millions of rows, cheap to build and to keep) lets a
-- recent window be found by reading only the block ranges at the table's end,
-- instead of walking every older position. Ranges are summarized as they fill
-- (autosummarize); the unsummarized tail is always read, and it is recent.
CREATE INDEX signals_recorded_brin ON signals USING brin (recorded_at) WITH (autosummarize = on);
