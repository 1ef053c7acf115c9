/**
 * A small Server-Sent Events client for tests: reads a real socket with
 * `fetch`, parses the event stream incrementally (as the WHATWG spec does:
 * fields, comments, blank-line dispatch, CR/LF/CRLF line ends) and keeps
 * every event and comment with its arrival time, so tests can wait on them.
 */
import { releaseResource, trackResource } from './leak-guard.ts';

export interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
  at: number;
}

export interface SseClient {
  status: number;
  contentType: string | null;
  events: SseEvent[];
  comments: Array<{ text: string; at: number }>;
  /** Set when the server ended the stream or the connection failed. */
  ended: boolean;
  error: unknown;
  close(): Promise<void>;
}

/** Feeds text chunks in; calls back per dispatched event and per comment. */
export function createSseParser(onEvent: (event: Omit<SseEvent, 'at'>) => void, onComment: (text: string) => void) {
  let buffer = '';
  let data: string[] = [];
  let eventType = '';
  let id: string | undefined;
  // A CR at the very end of a chunk may be half of a CRLF split across chunks.
  let pendingCr = false;

  const line = (text: string) => {
    if (text === '') {
      if (data.length > 0) onEvent({ id, event: eventType || 'message', data: data.join('\n') });
      data = [];
      eventType = '';
      id = undefined;
      return;
    }
    if (text.startsWith(':')) {
      onComment(text.slice(1).trimStart());
      return;
    }
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') eventType = value;
    else if (field === 'id' && !value.includes('\0')) id = value;
  };

  return (chunk: string) => {
    if (pendingCr && chunk.startsWith('\n')) chunk = chunk.slice(1);
    pendingCr = false;
    buffer += chunk;
    for (;;) {
      const match = /\r\n|\n|\r/.exec(buffer);
      if (!match) break;
      if (match[0] === '\r' && match.index === buffer.length - 1) {
        pendingCr = true;
      }
      line(buffer.slice(0, match.index));
      buffer = buffer.slice(match.index + match[0].length);
    }
  };
}

/** Opens an event stream; resolves once the response headers have arrived. */
export async function openSse(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
  const controller = new AbortController();
  const response = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: controller.signal });
  const client: SseClient = {
    status: response.status,
    contentType: response.headers.get('content-type'),
    events: [],
    comments: [],
    ended: false,
    error: undefined,
    close: async () => {
      releaseResource(client);
      controller.abort();
      await reading;
    },
  };
  const feed = createSseParser(
    (event) => client.events.push({ ...event, at: Date.now() }),
    (text) => client.comments.push({ text, at: Date.now() }),
  );
  const reading = (async () => {
    if (!response.body) return;
    const decoder = new TextDecoder();
    try {
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) feed(decoder.decode(chunk, { stream: true }));
    } catch (error) {
      if (!controller.signal.aborted) client.error = error;
    } finally {
      client.ended = true;
    }
  })();
  trackResource(client, `event stream ${url}`);
  return client;
}

/** The signals an event stream delivered, parsed, with their SSE ids. */
export function signalsOf(client: SseClient): Array<{ id: string | undefined; signal: { id: string; position: string; type: string } }> {
  return client.events
    .filter((event) => event.event === 'signal')
    .map((event) => ({ id: event.id, signal: JSON.parse(event.data) }));
}
