/**
 * The operator-chaos simulation: a seed generates a sequence of steps; the
 * sequence runs against the real CLI and daemon, a real sshd and a fresh
 * workspace; after every step the checker judges the invariants; the first
 * violation ends the run. A failing sequence shrinks to its shortest failing
 * prefix, then loses every step whose removal keeps the same check failing.
 */
import fs from 'node:fs/promises';
import { passArgs, runCli } from '../helpers/cli.js';
import { makeTempDir, type TestMaster, writeTree } from '../helpers/sshd.js';
import { until } from '../helpers/wait.js';
import { journalExists, Model, makeWorkspace, PROTECTED, protectedView, rngFor, syncedView } from './model.js';
import { daemonAlive, describeStep, enabledKinds, runStep, type SimOptions, type Step, type Violation, type World } from './steps.js';

export type { SimOptions, Step, Violation };

export interface SequenceResult {
  readonly steps: readonly Step[];
  /** Index of the step after which the first violation showed; undefined when every step passed. */
  readonly failedAt?: number;
  readonly violations: readonly Violation[];
  /** Violations of disabled checks, seen and set aside (with the reason printed). */
  readonly suppressed: readonly Violation[];
  readonly transcript: readonly string[];
  readonly elapsedMs: number;
}

export function generateSequence(seed: number, length: number, disabled: ReadonlyMap<string, string>): Step[] {
  const rng = rngFor(seed);
  const kinds = enabledKinds(disabled);
  const total = kinds.reduce((sum, [, w]) => sum + w, 0);
  const steps: Step[] = [];
  for (let i = 0; i < length; i++) {
    let r = rng.next() * total;
    const [kind] = kinds.find(([, w]) => (r -= w) < 0) ?? kinds[kinds.length - 1]!;
    steps.push({ kind, arg: rng.int(2 ** 31) });
  }
  return steps;
}

/** "check=reason;check=reason" (CHAOS_DISABLE): step kinds or check names to leave out, each with its reason. */
export function parseDisabled(spec: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (spec ?? '').split(';')) {
    const [name, ...reason] = part.split('=');
    if (name?.trim()) out.set(name.trim(), reason.join('=').trim() || 'no reason given');
  }
  return out;
}

/** I1 and I2, judged after every step. */
async function generalChecks(w: World): Promise<Violation[]> {
  const found: Violation[] = [];
  const prot = await protectedView(w.ws.target);
  for (const [rel, want] of Object.entries(PROTECTED)) {
    if (prot[rel] !== want) found.push({ invariant: 'I2', check: 'I2.excluded', message: `excluded slave-local ${rel} changed: ${JSON.stringify(prot[rel])}` });
  }
  const quiet = !w.daemons.some(daemonAlive);
  if (quiet && !w.model.localEditPending && !journalExists(w.ws) && !w.model.masterHistory.has(await syncedView(w.ws.target))) {
    found.push({
      invariant: 'I4',
      check: 'I4.unreported-half',
      message: 'the target is in no state the master had, with no crash journal and no local edit to explain it',
    });
  }
  if (w.model.paused) {
    const now = await syncedView(w.ws.target);
    if (now !== w.model.pausedTarget) {
      // Finishing a commit that began before the pause is allowed: the journal is gone and the target is a master state.
      if (w.model.journalAtPause && !journalExists(w.ws) && w.model.masterHistory.has(now)) {
        w.model.pausedTarget = now;
        w.model.journalAtPause = false;
      } else {
        found.push({ invariant: 'I1', check: 'I1.paused-changed', message: 'the target changed after `pause` returned 0 and before any resume' });
      }
    }
  }
  return found;
}

export async function runSequence(master: TestMaster, steps: readonly Step[], opts: SimOptions): Promise<SequenceResult> {
  const started = Date.now();
  const base = await makeTempDir('xroad-sync-chaos-');
  const ws = await makeWorkspace(base);
  const w: World = { ws, master, opts, model: new Model(), transcript: [], daemons: [] };
  const suppressed: Violation[] = [];
  try {
    await w.model.recordMaster(ws.source);
    const first = await runCli(
      ['sync', ...passArgs(master, { source: ws.source, target: ws.target, stateDir: ws.stateDir, flagFile: ws.flagFile, logFile: ws.logFile })],
      {
        env: { XROAD_SYNC_SETTINGS: ws.settingsFile },
        timeoutMs: 60_000,
      },
    );
    if (first.status !== 0) throw new Error(`the set-up sync failed (exit ${first.status}): ${first.stderr}`);
    await fs.cp(ws.target, ws.backup, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    for (let i = 0; i < steps.length; i++) {
      w.transcript.push(`#${i} ${describeStep(steps[i]!)}`);
      const seen = [...(await runStep(w, steps[i]!)), ...(await generalChecks(w))];
      const kept = seen.filter((x) => !opts.disabled.has(x.check) && !opts.disabled.has(x.invariant));
      for (const x of seen.filter((y) => !kept.includes(y))) {
        suppressed.push(x);
        w.transcript.push(`    (disabled ${x.check}: ${opts.disabled.get(x.check) ?? opts.disabled.get(x.invariant)}) ${x.message}`);
      }
      if (kept.length > 0) return { steps, failedAt: i, violations: kept, suppressed, transcript: w.transcript, elapsedMs: Date.now() - started };
      // After a violation set aside, bring the model and the world back together and go on.
      if (seen.length > 0) await rebaseline(w);
    }
    return { steps, violations: [], suppressed, transcript: w.transcript, elapsedMs: Date.now() - started };
  } finally {
    await cleanup(w);
    // CHAOS_KEEP=1 leaves the workspace for a look (its path is in the transcript's first line).
    if (process.env.CHAOS_KEEP === '1') w.transcript.unshift(`workspace kept: ${base}`);
    else await fs.rm(base, { recursive: true, force: true });
  }
}

/** The slave-local files put back, and the paused target taken as it is now. */
async function rebaseline(w: World): Promise<void> {
  await writeTree(w.ws.target, PROTECTED).catch((err: Error) => w.transcript.push(`    (could not put the slave-local files back: ${err.message})`));
  if (w.model.paused) w.model.pausedTarget = await syncedView(w.ws.target);
}

async function cleanup(w: World): Promise<void> {
  for (const d of w.daemons) {
    if (daemonAlive(d)) d.child.kill('SIGKILL');
    await Promise.race([d.done, until(() => false, 5_000, 100)]);
  }
}

export interface ShrinkResult {
  readonly steps: readonly Step[];
  readonly result: SequenceResult;
  readonly runs: number;
}

/**
 * The shortest failing prefix, then one pass of single-step removal from the
 * end: a shorter sequence is kept when the same check still fails. Real
 * processes race, so a sequence that does not fail again is left as it was.
 */
export async function shrink(
  master: TestMaster,
  failing: SequenceResult,
  opts: SimOptions,
  maxRuns = 30,
  log: (line: string) => void = () => {},
): Promise<ShrinkResult> {
  const check = failing.violations[0]!.check;
  let best = failing.steps.slice(0, failing.failedAt! + 1);
  let bestResult = failing;
  let runs = 0;
  for (let i = best.length - 2; i >= 0 && runs < maxRuns; i--) {
    const candidate = [...best.slice(0, i), ...best.slice(i + 1)];
    runs++;
    const r = await runSequence(master, candidate, opts);
    const same = r.violations.some((x) => x.check === check);
    log(`  shrink: without #${i} (${describeStep(best[i]!)}): ${same ? 'still fails, dropped' : 'passes, kept'}`);
    if (same) {
      best = candidate.slice(0, r.failedAt! + 1);
      bestResult = r;
      i = Math.min(i, best.length - 1);
    }
  }
  return { steps: best, result: bestResult, runs };
}

/** What a failure prints: the seed, the replay command and the sequence, one step per line. */
export function formatFailure(seed: number | undefined, steps: readonly Step[], result: SequenceResult): string {
  const lines = [
    `seed ${seed ?? '(replayed sequence)'}: ${result.violations.map((x) => `${x.invariant} [${x.check}] ${x.message}`).join('; ')}`,
    `shortest failing sequence (${steps.length} steps): ${steps.map(describeStep).join(' → ')}`,
    `replay: npm run chaos -- --replay '${JSON.stringify(steps)}'`,
    'transcript:',
    ...result.transcript.map((l) => `  ${l}`),
  ];
  return lines.join('\n');
}
