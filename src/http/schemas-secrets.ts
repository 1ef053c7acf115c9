import { z } from '@hono/zod-openapi';
import { OrgParams } from './schemas.ts';

export const SecretSchema = z
  .object({
    name: z.string(),
    fingerprint: z.string().openapi({ description: 'HMAC-SHA256 of the value under a key derived from the master key' }),
    last4: z.string().openapi({ description: 'The last four characters; empty for values shorter than 12' }),
    updated_at: z.string(),
  })
  .openapi('Secret');

export const SecretParams = OrgParams.extend({
  name: z.string().max(200).openapi({ param: { name: 'name', in: 'path' }, description: 'Secret name, ^[a-z][a-z0-9_.-]{0,62}$' }),
});
