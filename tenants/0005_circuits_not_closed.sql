-- The circuits an execution must not pass without a claim: read beside the
-- directives it starts, in the same round trip, so it has to stay cheap
-- however many endpoints a tenant has.
CREATE INDEX circuits_not_closed ON circuits (id) WHERE state <> 'closed';
