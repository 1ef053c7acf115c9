/**
 * Exponential backoff with jitter: `base · 2^(attempt-1)`, capped, then drawn
 * from its upper half so retries of many failures spread out instead of
 * arriving together. A provider's Retry-After is a floor.
 */
export function backoffMs(attempt: number, { baseMs, maxMs, retryAfterMs, random = Math.random }: {
  baseMs: number;
  maxMs: number;
  retryAfterMs?: number;
  random?: () => number;
}): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  const delay = ceiling / 2 + random() * (ceiling / 2);
  return Math.round(Math.max(delay, retryAfterMs ?? 0));
}
