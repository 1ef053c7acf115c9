/**
 * What every fake provider needs around its Hono app: serving it on
 * loopback, stopping it even while requests hang, holding requests until a
 * test lets them go, and hanging requests that the fake must still be able
 * to end. No vitest here: `npm run fakes` serves the fakes for demos.
 */
import type { Socket } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';

type Fetch = Parameters<typeof serve>[0]['fetch'];

export interface Loopback {
  server: ServerType;
  port: number;
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  url: string;
  /** Destroys the open sockets first: a hanging request or a keep-alive client would otherwise keep the server open. */
  close(): Promise<void>;
}

/** Serves `app` on 127.0.0.1 (`port` 0: any free port) and resolves once it listens. */
export async function serveOnLoopback(
  app: { fetch: Fetch },
  { port = 0, onConnection }: { port?: number; onConnection?: (socket: Socket) => void } = {},
): Promise<Loopback> {
  const sockets = new Set<Socket>();
  const server = await new Promise<ServerType>((resolve) => {
    const started = serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }, () => resolve(started));
    started.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      onConnection?.(socket);
    });
  });
  const address = server.address();
  const bound = typeof address === 'object' && address ? address.port : 0;
  let closing: Promise<void> | undefined;
  return {
    server,
    port: bound,
    url: `http://127.0.0.1:${bound}`,
    close() {
      // Once only: a second close (a test's own, then afterAll's) waits on the first.
      closing ??= new Promise<void>((resolve, reject) => {
        for (const socket of sockets) socket.destroy();
        server.close((error) => (error ? reject(error) : resolve()));
      });
      return closing;
    },
  };
}

export interface Gate {
  /** Holds the requests that `pass` from now on until the returned release is called. */
  hold(): () => void;
  /** Resolves at once unless a hold is on; then when it is released. */
  pass(): Promise<void>;
  /** Requests waiting in `pass`. */
  readonly held: number;
  /** Releases the current hold, if any (as on reset and close). */
  release(): void;
}

export function createGate(): Gate {
  let gate: Promise<void> | null = null;
  let current: (() => void) | null = null;
  let held = 0;
  return {
    hold() {
      let open!: () => void;
      gate = new Promise<void>((resolve) => (open = resolve));
      const release = () => {
        gate = null;
        current = null;
        open();
      };
      current = release;
      return release;
    },
    async pass() {
      if (!gate) return;
      held++;
      await gate.finally(() => held--);
    },
    get held() {
      return held;
    },
    release() {
      current?.();
    },
  };
}

export interface Hangs {
  /**
   * Never answers by itself: resolves when `releaseAll` is called or, given
   * the response stream, once the client goes away.
   */
  hang(outgoing?: { once(event: 'close', listener: () => void): unknown }): Promise<void>;
  /** Ends every hang, so that the server can stop. */
  releaseAll(): void;
}

export function createHangs(): Hangs {
  const waiting = new Set<() => void>();
  return {
    hang(outgoing) {
      return new Promise<void>((resolve) => {
        const done = () => {
          waiting.delete(done);
          resolve();
        };
        waiting.add(done);
        outgoing?.once('close', done);
      });
    },
    releaseAll() {
      for (const done of [...waiting]) done();
    },
  };
}
