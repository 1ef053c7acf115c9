/**
 * OpenAI failures as executor outcomes. The SDK's own retries are off, so
 * every failure lands here once and the directive's retry schedule (with the
 * provider's Retry-After as a floor) decides what happens next.
 */
import { APIConnectionError, APIConnectionTimeoutError, APIError } from 'openai';
import type { ExecuteResult } from '../registry.ts';

export const OPENAI_API_KEY = 'openai_api_key';
const MAX_MESSAGE_CHARS = 500;
/** A provider asking for more than this is asked again sooner; the directive's own bound still ends it. */
const MAX_RETRY_AFTER_MS = 10 * 60_000;

/**
 * The wait a 429 or 503 asks for: `retry-after-ms` (OpenAI's, milliseconds)
 * first, then the standard `retry-after` in seconds or as an HTTP date.
 */
export function retryAfterMsOf(headers: Headers | undefined, now = Date.now()): number | undefined {
  const millis = Number.parseFloat(headers?.get('retry-after-ms') ?? '');
  if (Number.isFinite(millis) && millis >= 0) return Math.min(Math.ceil(millis), MAX_RETRY_AFTER_MS);
  const value = headers?.get('retry-after');
  if (!value) return undefined;
  const seconds = Number(value);
  const wait = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - now;
  if (!Number.isFinite(wait)) return undefined;
  return Math.min(Math.max(0, Math.ceil(wait)), MAX_RETRY_AFTER_MS);
}

/** `text` without the key anywhere in it, bounded: error messages are stored and logged. */
export function redact(text: string, apiKey: string): string {
  return (apiKey ? text.split(apiKey).join('[redacted]') : text).slice(0, MAX_MESSAGE_CHARS);
}

/**
 * Maps what the SDK threw. Rate limits, server errors, timeouts and lost
 * connections are retryable; a refused key needs re-authorization; any other
 * 4xx is the request's own fault and permanent, under the API's error code.
 */
export function outcomeOfError(error: unknown, apiKey: string): ExecuteResult {
  if (error instanceof APIConnectionTimeoutError) {
    return { outcome: 'retryable', error: { code: 'timeout', message: 'OpenAI did not answer in time' } };
  }
  if (error instanceof APIConnectionError) {
    return { outcome: 'retryable', error: { code: 'connection_error', message: redact(`could not reach OpenAI: ${error.message}`, apiKey) } };
  }
  if (!(error instanceof APIError) || error.status === undefined) {
    return { outcome: 'retryable', error: { code: 'openai_error', message: redact(error instanceof Error ? error.message : 'the OpenAI call failed', apiKey) } };
  }
  const status = error.status;
  const code = error.code ?? error.type ?? `http_${status}`;
  if (status === 401) {
    // The API's message echoes a masked key; none of it is kept.
    return {
      outcome: 'needs_reauthorization',
      error: { code, message: `OpenAI refused the API key (${OPENAI_API_KEY}); store a valid one` },
      credential: OPENAI_API_KEY,
    };
  }
  const message = redact(error.message, apiKey);
  // Out of credit is a 429 too, but waiting does not refill the account.
  if (status === 429 && code === 'insufficient_quota') return { outcome: 'permanent', error: { code, message } };
  if (status === 429 || status === 408 || status === 409 || status >= 500) {
    const retryAfterMs = retryAfterMsOf(error.headers);
    return { outcome: 'retryable', error: { code, message }, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  }
  return { outcome: 'permanent', error: { code, message } };
}
