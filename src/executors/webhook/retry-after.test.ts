import { describe, expect, it } from 'vitest';
import { MAX_RETRY_AFTER_MS, parseRetryAfterMs } from './retry-after.ts';

const now = new Date('2030-01-01T12:00:00Z');

describe('parseRetryAfterMs', () => {
  it.each([
    ['1', 1000],
    ['0', 0],
    [' 120 ', 120_000],
    ['99999999', MAX_RETRY_AFTER_MS],
    ['Tue, 01 Jan 2030 12:00:05 GMT', 5000],
    ['Tue, 01 Jan 2030 11:59:00 GMT', 0],
    ['Wed, 02 Jan 2030 12:00:00 GMT', MAX_RETRY_AFTER_MS],
  ])('reads %j as %d ms', (value, ms) => {
    expect(parseRetryAfterMs(value, now)).toBe(ms);
  });

  it.each([undefined, '', '-1', '1.5', 'soon', 'Not a date at all'])('ignores %j', (value) => {
    expect(parseRetryAfterMs(value, now)).toBeUndefined();
  });

  it('takes the first of repeated headers', () => {
    expect(parseRetryAfterMs(['2', '7'], now)).toBe(2000);
  });
});
