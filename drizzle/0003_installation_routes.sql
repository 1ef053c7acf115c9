CREATE TABLE "installation_routes" (
	"installation_id" text PRIMARY KEY NOT NULL,
	"org_id" text NOT NULL
);
--> statement-breakpoint
ALTER TABLE "installation_routes" ADD CONSTRAINT "installation_routes_org_id_organizations_id_fk" FOREIGN KEY ("org_id") REFERENCES "public"."organizations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "installation_routes_org" ON "installation_routes" USING btree ("org_id");