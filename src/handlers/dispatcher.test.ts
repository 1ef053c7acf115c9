import { describe, expect, it } from 'vitest';
import { passInterval } from './dispatcher.ts';

describe('the dispatcher’s pace under a stream of wake-ups', () => {
  const bounds = { minIntervalMs: 10, maxIntervalMs: 100 };

  it('keeps a light stream at the shortest interval', () => {
    expect(passInterval(0, bounds)).toBe(10);
    expect(passInterval(1, bounds)).toBe(10);
    expect(passInterval(10, bounds)).toBe(10);
  });

  it('spaces passes by what the last one carried under a heavy stream, up to the longest', () => {
    expect(passInterval(40, bounds)).toBe(40);
    expect(passInterval(100, bounds)).toBe(100);
    expect(passInterval(1000, bounds)).toBe(100);
  });
});
