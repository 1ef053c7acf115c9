/**
 * The subscriber side of the stream benchmark, as its own process: real SSE
 * clients (fetch over HTTP/1.1) that keep, per subscriber, the count of
 * signal events, the last event id and whether ids ever failed to increase.
 * Strictly increasing ids and the expected count and last id together mean
 * every signal arrived exactly once, in order. Driven over IPC:
 * `open` → `opened`, `verify` → `verified`, `close` → `closed`.
 */
export interface SubscriberSpec {
  org: string;
  key: string;
  after: string;
}

export type SubscriberCommand =
  | { cmd: 'open'; baseUrl: string; subscribers: SubscriberSpec[] }
  | { cmd: 'verify'; expected: Record<string, { count: number; last: string | null }>; timeoutMs: number }
  | { cmd: 'close' }
  | { cmd: 'burn'; cpuMs: number; durationMs: number };

export interface VerifyReport {
  subscribers: number;
  exact: number;
  failures: string[];
  /** From the verify command until the last subscriber held the last signal of its org. */
  drainMs: number;
}

interface Subscriber {
  spec: SubscriberSpec;
  count: number;
  last: string;
  outOfOrder: number;
  ended: boolean;
  connected: boolean;
  controller: AbortController;
  done: Promise<void>;
}

let subscribers: Subscriber[] = [];

function subscribe(baseUrl: string, spec: SubscriberSpec): Subscriber {
  const subscriber: Subscriber = {
    spec,
    count: 0,
    last: spec.after,
    outOfOrder: 0,
    ended: false,
    connected: false,
    controller: new AbortController(),
    done: Promise.resolve(),
  };
  subscriber.done = (async () => {
    try {
      const response = await fetch(`${baseUrl}/v1/orgs/${spec.org}/stream?after=${spec.after}`, {
        headers: { authorization: `Bearer ${spec.key}`, accept: 'text/event-stream' },
        signal: subscriber.controller.signal,
      });
      if (response.status !== 200 || !response.body) throw new Error(`stream answered ${response.status}`);
      const decoder = new TextDecoder();
      let buffer = '';
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let start = 0;
        for (;;) {
          const end = buffer.indexOf('\n\n', start);
          if (end < 0) break;
          if (buffer.startsWith('id: ', start)) {
            const id = buffer.slice(start + 4, start + 36);
            if (id <= subscriber.last) subscriber.outOfOrder++;
            subscriber.last = id;
            subscriber.count++;
          } else if (buffer.startsWith(': connected', start)) {
            subscriber.connected = true;
          }
          start = end + 2;
        }
        buffer = buffer.slice(start);
      }
    } catch (error) {
      if (!subscriber.controller.signal.aborted) console.error(`subscriber of ${spec.org}: ${(error as Error).message}`);
    } finally {
      subscriber.ended = true;
    }
  })();
  return subscriber;
}

async function until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

/** Busy for a share of every 10 ms slot, so `cpuMs` is spent evenly over `durationMs`. */
function burn(cpuMs: number, durationMs: number) {
  const share = Math.min(1, cpuMs / durationMs);
  const ends = Date.now() + durationMs;
  const slot = () => {
    const started = performance.now();
    while (performance.now() - started < share * 10);
    if (Date.now() < ends) setTimeout(slot, Math.max(0, 10 - (performance.now() - started)));
  };
  slot();
}

process.on('message', async (message: SubscriberCommand) => {
  if (message.cmd === 'burn') {
    burn(message.cpuMs, message.durationMs);
    process.send!({ cmd: 'burning' });
  } else if (message.cmd === 'open') {
    // In groups, so a thousand connections do not all land in one instant.
    for (let index = 0; index < message.subscribers.length; index += 50) {
      const group = message.subscribers.slice(index, index + 50).map((spec) => subscribe(message.baseUrl, spec));
      subscribers.push(...group);
      await until(() => group.every((subscriber) => subscriber.connected || subscriber.ended), 30_000);
    }
    const failed = subscribers.filter((subscriber) => !subscriber.connected).length;
    process.send!({ cmd: 'opened', failed });
  } else if (message.cmd === 'verify') {
    const started = Date.now();
    const reached = (subscriber: Subscriber) => {
      const expected = message.expected[subscriber.spec.org]!;
      return subscriber.ended || expected.last === null || subscriber.last >= expected.last;
    };
    await until(() => subscribers.every(reached), message.timeoutMs);
    const drainMs = Date.now() - started;
    // A moment for anything extra (a repeat) to arrive and show in the count.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const failures: string[] = [];
    for (const subscriber of subscribers) {
      const expected = message.expected[subscriber.spec.org]!;
      const problems = [
        subscriber.ended && 'ended',
        subscriber.outOfOrder > 0 && `${subscriber.outOfOrder} ids not increasing`,
        subscriber.count !== expected.count && `${subscriber.count} of ${expected.count} signals`,
        expected.last !== null && subscriber.last !== expected.last && `last ${subscriber.last}, expected ${expected.last}`,
      ].filter(Boolean);
      if (problems.length > 0) failures.push(`${subscriber.spec.org}: ${problems.join(', ')}`);
    }
    const report: VerifyReport = { subscribers: subscribers.length, exact: subscribers.length - failures.length, failures: failures.slice(0, 5), drainMs };
    process.send!({ cmd: 'verified', report });
  } else if (message.cmd === 'close') {
    for (const subscriber of subscribers) subscriber.controller.abort();
    await Promise.all(subscribers.map((subscriber) => subscriber.done));
    subscribers = [];
    process.send!({ cmd: 'closed' });
  }
});
process.send!({ cmd: 'ready' });
