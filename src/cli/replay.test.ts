import { describe, expect, it } from 'vitest';
import { progressLine, replayRequestOf } from './replay.ts';

const running = { id: 'rpl_x', status: 'running' as const, processed: 1234, total: 5000, rate_per_s: 1200.4, eta_s: 75 };

describe('progressLine', () => {
  it('draws a bar with counts, percent, rate and ETA for a terminal', () => {
    expect(progressLine(running, { bar: true })).toBe('[#######-----------------------] 1,234/5,000 (24%) 1,200/s ETA 1m15s running');
  });

  it('writes a plain line for a pipe, and leaves out what is not known yet', () => {
    expect(progressLine(running, { bar: false })).toBe('rpl_x running 1,234/5,000 (24%) 1,200/s ETA 1m15s');
    expect(progressLine({ ...running, status: 'queued', processed: 0, total: null, rate_per_s: null, eta_s: null }, { bar: false })).toBe('rpl_x queued 0');
    expect(progressLine({ ...running, processed: 5000, status: 'succeeded', eta_s: 0 }, { bar: true })).toMatch(/^\[#{30}\] 5,000\/5,000 \(100%\)/);
  });
});

describe('replayRequestOf', () => {
  it('maps the flags to the request POST /replays takes', () => {
    expect(replayRequestOf('redeliver', {
      org: 'acme', reason: 'INC-1', handlers: 'a, b', types: 'x.y', from: 'f', until: 'u', dryRun: true, execute: true, rate: '50', json: false,
    })).toEqual({
      mode: 'redeliver', reason: 'INC-1', selection: { after: 'f', until: 'u', types: ['x.y'] }, handlers: ['a', 'b'], dry_run: true, new_directives: 'execute', rate_per_s: 50,
    });
    expect(replayRequestOf('as-of', { org: 'acme', reason: 'T-2', before: '2026-01-01T00:00:00Z', ttl: '120', json: true }))
      .toEqual({ mode: 'as_of', reason: 'T-2', selection: { before: '2026-01-01T00:00:00Z' }, ttl_s: 120 });
  });
});
