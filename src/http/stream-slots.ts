/**
 * Caps on concurrent event streams, per API key and per org. Counted in this
 * process: a stream holds a connection to one process for its whole life, so
 * the caps bound what one process serves (with N processes behind a balancer
 * an org may hold up to N times the cap). Over a cap the request is refused
 * before any read.
 */
export interface StreamSlots {
  /** A release function, or undefined when the key or the org is at its cap. */
  acquire(keyId: string, orgId: string): (() => void) | undefined;
}

export function createStreamSlots({ perKey, perOrg }: { perKey: number; perOrg: number }): StreamSlots {
  const byKey = new Map<string, number>();
  const byOrg = new Map<string, number>();
  const change = (counts: Map<string, number>, id: string, by: number) => {
    const next = (counts.get(id) ?? 0) + by;
    if (next === 0) counts.delete(id);
    else counts.set(id, next);
  };
  return {
    acquire(keyId, orgId) {
      if ((byKey.get(keyId) ?? 0) >= perKey || (byOrg.get(orgId) ?? 0) >= perOrg) return undefined;
      change(byKey, keyId, 1);
      change(byOrg, orgId, 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        change(byKey, keyId, -1);
        change(byOrg, orgId, -1);
      };
    },
  };
}
