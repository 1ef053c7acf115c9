CREATE TABLE "org_imports" (
	"org_id" text PRIMARY KEY NOT NULL,
	"sha256" text NOT NULL,
	"signals" integer NOT NULL,
	"written" integer DEFAULT 0 NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "org_imports" ADD CONSTRAINT "org_imports_org_id_organizations_id_fk" FOREIGN KEY ("org_id") REFERENCES "public"."organizations"("id") ON DELETE cascade ON UPDATE no action;