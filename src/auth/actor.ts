import { z } from 'zod';

/** Who did something: recorded on every signal. */
export const Actor = z.object({
  type: z.enum(['human', 'agent', 'system', 'integration']),
  id: z.string().min(1).max(200),
  display: z.string().min(1).max(200).optional(),
});
export type Actor = z.infer<typeof Actor>;

export const PLATFORM_ACTOR: Actor = { type: 'system', id: 'signalbus' };
