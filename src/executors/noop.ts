import { z } from 'zod';
import type { Executor } from './registry.ts';

/** `noop.record`: does nothing outside; its result is its params. For flows and tests. */
export const noopExecutor: Executor<Record<string, unknown>> = {
  kinds: ['noop.record'],
  params: z.record(z.string(), z.unknown()),
  estimateCostUsd: () => 0,
  honorsIdempotencyKey: true,
  // Nothing happens outside: a repeated run only records the same result.
  claimBeforeCall: false,
  async execute({ params }) {
    return { outcome: 'succeeded', result: params };
  },
};
