/**
 * Slow clients are cut off: a raw socket that trickles its headers, or its
 * body, is closed once the configured time has passed, an idle keep-alive
 * connection is closed, and connections past the cap are refused. Small
 * limits here; the deployed defaults are in docs/http.md.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, listen, type TestApp } from '../support/harness.ts';

let t: TestApp;
let server: Awaited<ReturnType<typeof listen>>;
let port: number;

beforeAll(async () => {
  t = await createTestApp({
    env: {
      SIGNALBUS_HTTP_HEADERS_TIMEOUT_MS: '1000',
      SIGNALBUS_HTTP_REQUEST_TIMEOUT_MS: '2000',
      SIGNALBUS_HTTP_KEEPALIVE_TIMEOUT_MS: '500',
      SIGNALBUS_HTTP_MAX_CONNECTIONS: '4',
    },
  });
  server = await listen(t.app, t.config);
  port = Number(new URL(server.url).port);
});
afterAll(async () => {
  await server.close();
  await t.close();
});

/** Opens a socket and writes `head`, then one byte of `trickle` every 200 ms; resolves with ms until the server closed it. */
function trickle(head: string, drip: string): Promise<{ ms: number; answer: string }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let answer = '';
    let timer: NodeJS.Timeout | undefined;
    const socket: Socket = connect(port, '127.0.0.1', () => {
      socket.write(head);
      let at = 0;
      timer = setInterval(() => {
        if (drip && !socket.destroyed && !socket.writableEnded) socket.write(drip[at++ % drip.length]!);
      }, 200);
    });
    socket.on('data', (chunk) => (answer += chunk.toString()));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ ms: Date.now() - started, answer });
    });
    setTimeout(() => {
      socket.destroy();
      reject(new Error('the server held the slow client for 20 s'));
    }, 20_000);
  });
}

describe('slow clients', () => {
  it('a trickled header is cut after the header timeout', async () => {
    const { ms } = await trickle('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ', 'abcdefgh');
    // Before: Node's defaults held it for a minute or more.
    expect(ms).toBeLessThan(8_000);
  });

  it('a trickled body is cut after the request timeout', async () => {
    const head = `POST /v1/orgs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t.platformKey}\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n`;
    const { ms, answer } = await trickle(head, '{"a":1}');
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(ms).toBeGreaterThanOrEqual(1_500);
    expect(ms).toBeLessThan(10_000);
  });

  it('closes an idle keep-alive connection', async () => {
    const { ms, answer } = await trickle('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', '');
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(ms).toBeLessThan(5_000);
  });

  it('refuses connections past the cap', async () => {
    const open = await Promise.all(
      Array.from({ length: 4 }, () => new Promise<Socket>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => resolve(socket));
        socket.on('error', () => {});
      })),
    );
    try {
      const { ms } = await trickle('', '');
      expect(ms).toBeLessThan(2_000);
    } finally {
      for (const socket of open) socket.destroy();
    }
  });
});
