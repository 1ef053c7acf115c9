/**
 * A tenant as every module addresses it: the organization's id, its slug and
 * the schema that holds its tables. The schema name is the one stored with the
 * organization (`public.organizations.schema_name`), read through the tenant
 * directory — never derived again from unchecked input.
 */
export interface Tenant {
  id: string;
  slug: string;
  schema: string;
}
