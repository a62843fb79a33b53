/**
 * `npm run chaos -- --seed N --steps M [--sequences K] [--full-scan] [--no-shrink]`
 * runs longer simulations than the CI budget: K sequences with seeds N, N+1, …
 * (N random when not given). `--replay '<steps JSON>'` runs one printed
 * sequence exactly. CHAOS_DISABLE="name=reason;…" leaves out step kinds or
 * checks. Exit 1 when any sequence failed.
 */
import { parseArgs } from 'node:util';
import { startMaster } from '../helpers/sshd.js';
import { formatFailure, generateSequence, parseDisabled, runSequence, type SimOptions, type Step, shrink } from './simulation.js';
import { killEveryDaemon } from './steps.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    steps: { type: 'string', default: '20' },
    sequences: { type: 'string', default: '1' },
    replay: { type: 'string' },
    'full-scan': { type: 'boolean', default: false },
    'no-shrink': { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
  },
});

const seed0 = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 1e9);
const disabled = parseDisabled(process.env.CHAOS_DISABLE);
const opts: SimOptions = { convergeMs: 10_000, fullScanMs: values['full-scan'] ? 70_000 : 0, disabled };
for (const [name, why] of disabled) console.log(`disabled: ${name} (${why})`);

const master = await startMaster();
// Stopped by hand (Ctrl-C, timeout): no daemon or sshd of ours outlives the runner.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killEveryDaemon();
    void master.stop().finally(() => process.exit(130));
  });
}
let failures = 0;
try {
  const jobs: Array<{ seed?: number; steps: Step[] }> = values.replay
    ? [{ steps: JSON.parse(values.replay) as Step[] }]
    : Array.from({ length: Number(values.sequences) }, (_, i) => ({ seed: seed0 + i, steps: generateSequence(seed0 + i, Number(values.steps), disabled) }));
  for (const job of jobs) {
    let result: Awaited<ReturnType<typeof runSequence>>;
    try {
      result = await runSequence(master, job.steps, opts);
    } catch (err) {
      failures++;
      console.log(`seed ${job.seed ?? '(replay)'}: the harness failed: ${(err as Error).stack}`);
      continue;
    }
    if (result.failedAt === undefined) {
      if (values.verbose) console.log(result.transcript.join('\n'));
      console.log(
        `seed ${job.seed ?? '(replay)'}: ${job.steps.length} steps ok in ${(result.elapsedMs / 1000).toFixed(1)} s${result.suppressed.length ? ` (disabled checks seen: ${[...new Set(result.suppressed.map((x) => x.check))].join(', ')})` : ''}`,
      );
      continue;
    }
    failures++;
    if (values['no-shrink'] || values.replay) {
      console.log(formatFailure(job.seed, result.steps.slice(0, result.failedAt + 1), result));
      continue;
    }
    console.log(`seed ${job.seed}: failed at step ${result.failedAt}: ${result.violations[0]!.check}; shrinking …`);
    const shrunk = await shrink(master, result, opts, 30, (l) => console.log(l));
    console.log(formatFailure(job.seed, shrunk.steps, shrunk.result));
  }
} finally {
  await master.stop();
}
process.exitCode = failures > 0 ? 1 : 0;
