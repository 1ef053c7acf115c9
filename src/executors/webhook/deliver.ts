/**
 * One POST of a webhook over node:http/https, with the guarded lookup, a
 * connect deadline (DNS and TCP) and a response deadline (until the status
 * line and headers). Redirects are never followed: node:http does not follow
 * them, and the caller treats a 3xx as the answer. Never throws: every
 * failure comes back as a value the executor maps to an outcome.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { TargetRefusedError } from './guarded-lookup.ts';

export interface DeliveryRequest {
  url: URL;
  headers: Record<string, string>;
  body: string;
  lookup: LookupFunction;
  /** Keep-alive pools whose sockets were all opened through `lookup`. */
  agents: DeliveryAgents;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
}

export type DeliveryFailure = 'connect_timeout' | 'response_timeout' | 'dns_failed' | 'network_error';

export type DeliveryOutcome =
  | { kind: 'response'; status: number; headers: IncomingHttpHeaders }
  | { kind: 'refused'; message: string }
  /** Node refused to build the request (a header or host it cannot send): repeating it cannot help. */
  | { kind: 'invalid'; message: string }
  | { kind: 'failed'; code: DeliveryFailure; message: string };

export interface DeliveryAgents {
  http: http.Agent;
  https: https.Agent;
}

/**
 * Keep-alive pools for one guarded lookup. A socket is judged once, on the
 * address it connected to; reusing it later cannot reach another address.
 * Pools are never shared between lookups, so no socket opened under a more
 * permissive guard serves a stricter one. Idle sockets close after a few
 * seconds, as Node's global agent does.
 */
export function createDeliveryAgents(): DeliveryAgents {
  const options = { keepAlive: true, scheduling: 'lifo' as const, timeout: 5_000 };
  return { http: new http.Agent(options), https: new https.Agent(options) };
}

/** A receiver's answer body is never read, only drained up to this much, so a huge one cannot hold the worker. */
const MAX_DRAINED_BYTES = 64 * 1024;
const DNS_ERRORS = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EAI_NODATA']);

export function deliver({ url, headers, body, lookup, agents, connectTimeoutMs, responseTimeoutMs }: DeliveryRequest): Promise<DeliveryOutcome> {
  const transport = url.protocol === 'https:' ? https : http;
  const host = url.host;
  return new Promise((resolve) => {
    let settled = false;
    let timedOut: 'connect_timeout' | 'response_timeout' | null = null;
    let connectTimer: NodeJS.Timeout | undefined;
    let responseTimer: NodeJS.Timeout | undefined;
    const settle = (outcome: DeliveryOutcome) => {
      clearTimeout(connectTimer);
      clearTimeout(responseTimer);
      if (settled) return;
      settled = true;
      resolve(outcome);
    };

    let request: http.ClientRequest;
    try {
      request = transport.request({
        protocol: url.protocol,
        hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
        port: url.port === '' ? undefined : Number(url.port),
        path: `${url.pathname}${url.search}`,
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        lookup,
        agent: url.protocol === 'https:' ? agents.https : agents.http,
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'ERR_INVALID_REQUEST';
      return settle({ kind: 'invalid', message: `a request to ${host} cannot be sent (${code})` });
    }

    const expire = (which: 'connect_timeout' | 'response_timeout') => {
      timedOut = which;
      request.destroy(new Error(which));
    };
    const startResponseClock = () => {
      clearTimeout(connectTimer);
      responseTimer = setTimeout(() => expire('response_timeout'), responseTimeoutMs);
    };

    request.on('socket', (socket) => {
      if (!socket.connecting) return startResponseClock();
      connectTimer = setTimeout(() => expire('connect_timeout'), connectTimeoutMs);
      socket.once('connect', startResponseClock);
    });

    request.on('response', (response) => {
      settle({ kind: 'response', status: response.statusCode ?? 0, headers: response.headers });
      // Drain what little the receiver says so the socket closes cleanly;
      // a long or slow body is cut off.
      let drained = 0;
      const cutoff = setTimeout(() => request.destroy(), responseTimeoutMs);
      response.on('data', (chunk: Buffer) => {
        drained += chunk.length;
        if (drained > MAX_DRAINED_BYTES) request.destroy();
      });
      response.on('close', () => clearTimeout(cutoff));
      response.on('error', () => {});
    });

    request.on('error', (error: NodeJS.ErrnoException) => settle(failureOf(error, timedOut, { url, connectTimeoutMs, responseTimeoutMs })));

    // Whatever else happens, a closed request has an outcome.
    request.on('close', () => settle({ kind: 'failed', code: 'network_error', message: `the connection to ${host} closed without an answer` }));
    request.end(body);
  });
}

function failureOf(
  error: NodeJS.ErrnoException,
  timedOut: 'connect_timeout' | 'response_timeout' | null,
  { url, connectTimeoutMs, responseTimeoutMs }: Pick<DeliveryRequest, 'url' | 'connectTimeoutMs' | 'responseTimeoutMs'>,
): DeliveryOutcome {
  const host = url.host;
  if (error instanceof TargetRefusedError || error.code === 'SSRF_REFUSED') return { kind: 'refused', message: error.message };
  if (timedOut === 'connect_timeout') {
    return { kind: 'failed', code: timedOut, message: `connecting to ${host} took longer than ${connectTimeoutMs} ms` };
  }
  if (timedOut === 'response_timeout') {
    return { kind: 'failed', code: timedOut, message: `${host} did not answer within ${responseTimeoutMs} ms` };
  }
  if (error.code && DNS_ERRORS.has(error.code)) return { kind: 'failed', code: 'dns_failed', message: `resolving ${url.hostname} failed (${error.code})` };
  // Node's own codes and messages name the address and port, never the path or query.
  return { kind: 'failed', code: 'network_error', message: `delivering to ${host} failed (${error.code ?? error.message})` };
}
