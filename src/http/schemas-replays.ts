/** Replay schemas for the OpenAPI document: the request is the domain's, the answer the row the verbs present. */
import { z } from '@hono/zod-openapi';
import { REPLAY_MODES, REPLAY_STATUSES } from '../replay/model.ts';
import { Actor } from '../signals/actor.ts';
import { OrgParams } from './schemas.ts';

export { ReplayRequest as ReplayRequestBody } from '../replay/model.ts';

export const ReplaySchema = z
  .object({
    id: z.string().describe('`rpl_…`'),
    mode: z.enum(REPLAY_MODES),
    status: z.enum(REPLAY_STATUSES),
    reason: z.string(),
    actor: Actor.describe('Who requested it; every replay.* signal is attributed to them'),
    request: z.record(z.string(), z.unknown()).describe('The request as accepted, defaults filled in'),
    processed: z.number(),
    total: z.number().nullable(),
    rate_per_s: z.number().nullable(),
    eta_s: z.number().nullable(),
    report: z
      .record(z.string(), z.unknown())
      .nullable()
      .describe('rebuild: `projections`, `signals`, `checksums_before`, `checksums_after`, `drift`; as_of: `as_of`, `checksums`'),
    error: z.object({ code: z.string(), message: z.string(), position: z.string().nullish(), signal_id: z.string().nullish() }).nullable(),
    requested_at: z.string(),
    started_at: z.string().nullable(),
    finished_at: z.string().nullable(),
    expires_at: z.string().nullable().describe('as_of: until when `?as_of=<id>` reads it'),
    dropped_at: z.string().nullable(),
  })
  .openapi('Replay');

export const ReplayResponse = z.object({ replay: ReplaySchema });

export const ReplayIdParams = OrgParams.extend({ id: z.string().max(64) });
