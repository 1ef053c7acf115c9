/**
 * `npm run bench -- <scenario>`: benchmarks that print their figures and a
 * ratio against a baseline measured in the same run. Not tests.
 */
import { runConsoleBench } from './bench/console.ts';
import { runEdgeBench } from './bench/edge.ts';
import { runExecutorsBench } from './bench/executors.ts';
import { runFanoutBench } from './bench/fanout.ts';
import { runHooksBench } from './bench/hooks.ts';
import { runIngestBench } from './bench/ingest.ts';
import { runPolicyBench } from './bench/policy.ts';
import { runRedeliverBench } from './bench/replay-redeliver.ts';
import { runRebuildBench } from './bench/replay-rebuild.ts';
import { runStreamBench } from './bench/stream.ts';

const scenarios: Record<string, () => Promise<void>> = {
  ingest: runIngestBench,
  fanout: runFanoutBench,
  executors: runExecutorsBench,
  policy: runPolicyBench,
  stream: runStreamBench,
  edge: runEdgeBench,
  // BENCH_REPLAY_PARTS=rebuild (or redeliver) runs one part.
  replay: async () => {
    const parts = process.env.BENCH_REPLAY_PARTS ?? 'rebuild,redeliver';
    if (parts.includes('rebuild')) await runRebuildBench();
    if (parts.includes('redeliver')) await runRedeliverBench();
  },
  hooks: runHooksBench,
  console: runConsoleBench,
};

const name = process.argv[2] ?? 'ingest';
const scenario = scenarios[name];
if (!scenario) {
  console.error(`unknown benchmark ${name}; one of: ${Object.keys(scenarios).join(', ')}`);
  process.exit(2);
}
await scenario();
