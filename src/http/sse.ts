/**
 * A live stream of one org's signals as Server-Sent Events, shared by the API
 * (`GET /v1/orgs/:org/stream`) and the console's live tail: one follower of
 * the org's shared tail, resumable from a cursor, capped per key and per org.
 */
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { Tenant } from '../core/tenant.ts';
import type { Cursor, TypeFilter } from '../signals/model.ts';
import type { HttpDeps } from './context.ts';
import { problem, problemResponse } from './problem.ts';

/** Streams end by the client's leave; a second is a fair first wait for a slot. */
const RETRY_AFTER_SECONDS = '1';

export async function signalStreamResponse(
  c: Context<any>,
  deps: HttpDeps,
  { tenant, keyId, resumeAfter, types }: { tenant: Tenant; keyId: string; resumeAfter?: Cursor; types?: TypeFilter },
): Promise<Response> {
  const release = deps.streamSlots.acquire(keyId, tenant.id);
  if (!release) {
    const response = problemResponse(problem('rate_limited', 'too many concurrent streams for this key or organization'), c.get('requestId'));
    response.headers.set('retry-after', RETRY_AFTER_SECONDS);
    return response;
  }
  const abort = new AbortController();
  try {
    // Without a cursor the stream starts at the present: rows committed
    // before we connected may sit above the horizon, but are the past.
    const present = resumeAfter ? undefined : await deps.streams.present();
    const response = streamSSE(c, async (stream) => {
      stream.onAbort(() => {
        abort.abort();
        release();
      });
      try {
        await stream.write(': connected\n\n');
        const chunks = deps.streams.follow({
          tenant,
          after: resumeAfter ?? present!.cursor,
          ...(types ? { types } : {}),
          ...(present ? { past: present } : {}),
          heartbeatMs: deps.heartbeatMs,
          abort: abort.signal,
        });
        for await (const chunk of chunks) await stream.write(chunk.kind === 'events' ? chunk.data : ': heartbeat\n\n');
      } finally {
        release();
      }
    }, async (error) => {
      // The client reconnects with its Last-Event-ID; the cause is ours to see.
      deps.logger.warn({ request_id: c.get('requestId'), err: error }, 'event stream ended by an error');
    });
    // streamSSE sets `no-cache`; like every API answer, the stream is not to be stored.
    response.headers.set('cache-control', 'no-store');
    return response;
  } catch (error) {
    release();
    throw error;
  }
}
