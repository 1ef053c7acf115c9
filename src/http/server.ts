/**
 * The Node HTTP server signalbus listens with, built in one place so the CLI
 * and the tests run the same limits: how long a client may take to send its
 * headers and its whole request, how long an idle keep-alive connection
 * stays open, and how many connections are held at once. Node's own
 * defaults (a 60 s header and 300 s request timeout, checked every 30 s, no
 * connection cap) let slow clients hold sockets for minutes.
 */
import type { Server } from 'node:http';
import { serve, type ServerType } from '@hono/node-server';

export interface ServerLimits {
  /** Time to receive the request headers. */
  headersTimeoutMs: number;
  /** Time to receive the whole request, body included (not the response: streams last). */
  requestTimeoutMs: number;
  /** How long an idle keep-alive connection is kept. */
  keepAliveTimeoutMs: number;
  /** Connections held at once; more are refused. */
  maxConnections: number;
}

/** The limits a configuration sets. */
export function serverLimits(config: {
  SIGNALBUS_HTTP_HEADERS_TIMEOUT_MS: number;
  SIGNALBUS_HTTP_REQUEST_TIMEOUT_MS: number;
  SIGNALBUS_HTTP_KEEPALIVE_TIMEOUT_MS: number;
  SIGNALBUS_HTTP_MAX_CONNECTIONS: number;
}): ServerLimits {
  return {
    headersTimeoutMs: config.SIGNALBUS_HTTP_HEADERS_TIMEOUT_MS,
    // Node requires the headers to fit within the request's time.
    requestTimeoutMs: Math.max(config.SIGNALBUS_HTTP_REQUEST_TIMEOUT_MS, config.SIGNALBUS_HTTP_HEADERS_TIMEOUT_MS),
    keepAliveTimeoutMs: config.SIGNALBUS_HTTP_KEEPALIVE_TIMEOUT_MS,
    maxConnections: config.SIGNALBUS_HTTP_MAX_CONNECTIONS,
  };
}

/** Starts listening; resolves once the port is bound. */
export function startHttpServer(
  fetch: (request: Request, env: unknown) => Response | Promise<Response>,
  { hostname, port, limits }: { hostname: string; port: number; limits: ServerLimits },
): Promise<ServerType> {
  return new Promise((resolve, reject) => {
    const server = serve(
      {
        fetch,
        hostname,
        port,
        serverOptions: {
          headersTimeout: limits.headersTimeoutMs,
          requestTimeout: limits.requestTimeoutMs,
          keepAliveTimeout: limits.keepAliveTimeoutMs,
          // How often the two timeouts above are checked (Node's default is 30 s).
          connectionsCheckingInterval: Math.max(100, Math.min(1_000, limits.headersTimeoutMs / 4)),
        },
      },
      () => resolve(server),
    );
    (server as Server).maxConnections = limits.maxConnections;
    server.once('error', reject);
  });
}
