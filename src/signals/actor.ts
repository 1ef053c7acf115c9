import { z } from 'zod';
import { isStorableText, UNSTORABLE_TEXT_MESSAGE } from '../core/storable-text.ts';

/** Who did something: recorded on every signal. */
export const Actor = z.object({
  type: z.enum(['human', 'agent', 'system', 'integration']),
  id: z.string().min(1).max(200).refine(isStorableText, UNSTORABLE_TEXT_MESSAGE),
  display: z.string().min(1).max(200).refine(isStorableText, UNSTORABLE_TEXT_MESSAGE).optional(),
});
export type Actor = z.infer<typeof Actor>;

export const PLATFORM_ACTOR: Actor = { type: 'system', id: 'signalbus' };
