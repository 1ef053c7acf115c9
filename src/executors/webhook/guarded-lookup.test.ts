import type { LookupAddress, LookupOptions } from 'node:dns';
import { describe, expect, it } from 'vitest';
import { createGuardedLookup, TargetRefusedError, type ResolvedAddress } from './guarded-lookup.ts';

type Answer = { error: NodeJS.ErrnoException | null; address: string | LookupAddress[]; family?: number };

/** Calls the lookup the way a socket does. */
function lookUp(lookup: ReturnType<typeof createGuardedLookup>, hostname: string, options: LookupOptions = {}): Promise<Answer> {
  return new Promise((resolve) => lookup(hostname, options, (error, address, family) => resolve({ error, address, family })));
}

/** A resolver answering from a script, one answer per call, counting calls. */
function scripted(...answers: ResolvedAddress[][]) {
  const calls: string[] = [];
  const resolve = async (hostname: string) => {
    calls.push(hostname);
    return answers[Math.min(calls.length, answers.length) - 1]!;
  };
  return { resolve, calls };
}

const PUBLIC: ResolvedAddress = { address: '93.184.216.34', family: 4 };
const LOOPBACK: ResolvedAddress = { address: '127.0.0.1', family: 4 };

describe('the guarded lookup', () => {
  it('checks each resolution it hands to a socket: a name rebinding from public to loopback is refused on the rebound answer', async () => {
    const dns = scripted([PUBLIC], [LOOPBACK]);
    const lookup = createGuardedLookup({ resolve: dns.resolve, allowPrivateTargets: false });

    const first = await lookUp(lookup, 'rebind.example.test');
    expect(first).toEqual({ error: null, address: '93.184.216.34', family: 4 });
    const second = await lookUp(lookup, 'rebind.example.test');
    expect(second.error).toBeInstanceOf(TargetRefusedError);
    expect(second.error?.message).toBe('rebind.example.test resolves to 127.0.0.1, a loopback address');
    // One resolution per lookup: the address checked is the address returned
    // to the socket, with no second query in between for DNS to change.
    expect(dns.calls).toEqual(['rebind.example.test', 'rebind.example.test']);
  });

  it('refuses an answer with any private address, even after a public one', async () => {
    const dns = scripted([PUBLIC, { address: '::ffff:169.254.169.254', family: 6 }]);
    const lookup = createGuardedLookup({ resolve: dns.resolve, allowPrivateTargets: false });
    for (const all of [false, true]) {
      const answer = await lookUp(lookup, 'mixed.example.test', { all });
      expect(answer.error).toBeInstanceOf(TargetRefusedError);
      expect(answer.error?.message).toMatch(/169\.254\.169\.254, a ipv4Mapped:linkLocal address/);
    }
  });

  it('answers every checked address when the socket asks for all, and honours a family', async () => {
    const v6: ResolvedAddress = { address: '2606:4700:4700::1111', family: 6 };
    const dns = scripted([PUBLIC, v6]);
    const lookup = createGuardedLookup({ resolve: dns.resolve, allowPrivateTargets: false });
    expect(await lookUp(lookup, 'dual.example.test', { all: true })).toMatchObject({ error: null, address: [PUBLIC, v6] });
    expect(await lookUp(lookup, 'dual.example.test', { family: 6 })).toEqual({ error: null, address: v6.address, family: 6 });
    expect(await lookUp(lookup, 'dual.example.test', { family: 4, all: true })).toMatchObject({ error: null, address: [PUBLIC] });
    const onlyV6 = createGuardedLookup({ resolve: scripted([v6]).resolve, allowPrivateTargets: false });
    expect((await lookUp(onlyV6, 'dual.example.test', { family: 4 })).error?.code).toBe('ENOTFOUND');
  });

  it('refuses local and metadata names without resolving them', async () => {
    const dns = scripted([PUBLIC]);
    const lookup = createGuardedLookup({ resolve: dns.resolve, allowPrivateTargets: false });
    for (const name of ['localhost', 'metadata.google.internal']) {
      expect((await lookUp(lookup, name)).error).toBeInstanceOf(TargetRefusedError);
    }
    expect(dns.calls).toEqual([]);
  });

  it('lets private answers through when private targets are allowed', async () => {
    const lookup = createGuardedLookup({ resolve: scripted([LOOPBACK]).resolve, allowPrivateTargets: true });
    expect(await lookUp(lookup, 'localhost')).toEqual({ error: null, address: '127.0.0.1', family: 4 });
  });
});
