/**
 * Group commit for work that shares a key (a tenant): requests arriving
 * while the key's previous group is in flight go out together as the next
 * group, so under load one transaction serves many, and an idle key's
 * request goes out at once. If a group fails, each of its requests is run
 * alone, so one bad request cannot fail its neighbours.
 */
export type GroupRun<Request, Result> = (key: string, requests: Request[]) => Promise<Result[]>;

interface Pending<Request, Result> {
  request: Request;
  resolve(result: Result): void;
  reject(error: unknown): void;
}

export interface GroupRunner<Request, Result> {
  run(key: string, request: Request): Promise<Result>;
}

export function createGroupRunner<Request, Result>(
  runGroup: GroupRun<Request, Result>,
  { maxGroup = 64 }: { maxGroup?: number } = {},
): GroupRunner<Request, Result> {
  const queues = new Map<string, { waiting: Pending<Request, Result>[]; running: boolean }>();

  async function runAlone(key: string, pending: Pending<Request, Result>) {
    try {
      const [result] = await runGroup(key, [pending.request]);
      pending.resolve(result as Result);
    } catch (error) {
      pending.reject(error);
    }
  }

  async function drain(key: string) {
    const queue = queues.get(key)!;
    queue.running = true;
    while (queue.waiting.length > 0) {
      const group = queue.waiting.splice(0, maxGroup);
      try {
        const results = await runGroup(key, group.map((pending) => pending.request));
        group.forEach((pending, index) => pending.resolve(results[index] as Result));
      } catch (error) {
        if (group.length === 1) group[0]!.reject(error);
        else for (const pending of group) await runAlone(key, pending);
      }
    }
    queue.running = false;
    queues.delete(key);
  }

  return {
    run(key, request) {
      return new Promise<Result>((resolve, reject) => {
        let queue = queues.get(key);
        if (!queue) {
          queue = { waiting: [], running: false };
          queues.set(key, queue);
        }
        queue.waiting.push({ request, resolve, reject });
        if (!queue.running) void drain(key);
      });
    },
  };
}
