-- An installation row names the last signal folded into it by id, not by log
-- position: positions are this database's (transaction ids), so a row holding
-- one would differ after `orgs import` and break the checksum equality a move
-- is proven by. Rows folded before this held a position; refolding them gives
-- the id (the replay `rebuild` of `installations`).
ALTER TABLE installations RENAME COLUMN position TO last_signal_id;
