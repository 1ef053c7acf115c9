/**
 * `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date, as the
 * milliseconds to wait. Capped, so a receiver cannot park a directive in
 * `executing` for days by answering an absurd value.
 */
export const MAX_RETRY_AFTER_MS = 60 * 60_000;

export function parseRetryAfterMs(value: string | string[] | undefined, now: Date): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined) return undefined;
  const text = raw.trim();
  if (text === '') return undefined;
  if (/^\d+$/.test(text)) return Math.min(Number(text) * 1000, MAX_RETRY_AFTER_MS);
  // Only date-looking values: Date.parse would also read "12" or "1.5" as dates.
  if (!/[a-z]/i.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(0, at - now.getTime()), MAX_RETRY_AFTER_MS);
}
