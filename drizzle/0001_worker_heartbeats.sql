CREATE TABLE "worker_heartbeats" (
	"worker_id" text PRIMARY KEY NOT NULL,
	"process" text NOT NULL,
	"last_seen" timestamp with time zone NOT NULL
);
