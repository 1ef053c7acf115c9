import { describe, expect, it } from 'vitest';
import { createMetrics } from './metrics.ts';

describe('metrics', () => {
  it('counts signals by type family and folds malformed or excess families into other', async () => {
    const metrics = createMetrics({ tenantLabels: true });
    metrics.signalsEmitted('stripe.charge.refunded');
    metrics.signalsEmitted('stripe.charge.created', 2);
    metrics.signalsEmitted('Weird Type');
    for (let i = 0; i < 250; i++) metrics.signalsEmitted(`family${i}.happened`);
    const text = await metrics.render();
    expect(text).toContain('signalbus_signals_emitted_total{family="stripe"} 3');
    expect(text).toContain('signalbus_signals_emitted_total{family="family0"} 1');
    // 200 families are kept (stripe and family0..family198); the rest, and the malformed one, are other.
    expect(text).not.toContain('family="family199"');
    expect(text).toContain('signalbus_signals_emitted_total{family="other"} 52');
  });

  it('renders every series with its labels', async () => {
    const metrics = createMetrics({ collectOldestJobAgeSeconds: async () => 12.5 });
    metrics.dedupeHits();
    metrics.jobLatency('handle_signal', 0.02);
    metrics.directiveDecision('allow');
    metrics.executionFailed('refund-on-dispute', true);
    const text = await metrics.render();
    expect(metrics.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(text).toContain('signalbus_signals_deduplicated_total 1');
    expect(text).toContain('signalbus_job_latency_seconds_bucket{le="0.025",task="handle_signal"} 1');
    expect(text).toContain('signalbus_directive_decisions_total{effect="allow"} 1');
    expect(text).toContain('signalbus_execution_failures_total{handler="refund-on-dispute",final="true"} 1');
    expect(text).toContain('signalbus_oldest_unprocessed_job_age_seconds 12.5');
  });

  it('reports 0 with no runnable job and NaN, not a failed scrape, when the collector throws', async () => {
    let fail = false;
    const metrics = createMetrics({
      collectOldestJobAgeSeconds: async () => {
        if (fail) throw new Error('database down');
        return null;
      },
    });
    expect(await metrics.render()).toContain('signalbus_oldest_unprocessed_job_age_seconds 0');
    fail = true;
    // prom-client writes `Nan`; Prometheus parses NaN case-insensitively.
    expect(await metrics.render()).toMatch(/^signalbus_oldest_unprocessed_job_age_seconds nan$/im);
  });

  it('keeps registries apart, so two apps in one process do not collide', async () => {
    const one = createMetrics({});
    const two = createMetrics({});
    one.dedupeHits(3);
    expect(await two.render()).toContain('signalbus_signals_deduplicated_total 0');
  });
});
