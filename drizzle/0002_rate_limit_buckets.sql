-- Token buckets shared by every server process (src/ratelimit). UNLOGGED: a
-- bucket is worth nothing after a crash (it refills within seconds anyway),
-- so its updates skip the WAL. Not part of drizzle's schema model, which
-- cannot declare an unlogged table; one row per API key and per org.
CREATE UNLOGGED TABLE "rate_limit_buckets" (
	"id" text PRIMARY KEY NOT NULL,
	"tokens" double precision NOT NULL,
	"granted" integer NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
