/** `xroad-sync daemon`: resolve settings, then hand over to the daemon loop. */
import v8 from 'node:v8';
import { runDaemon } from '../daemon/daemon.js';
import { keepMemoryReducerAwake } from '../daemon/memory-reducer.js';
import { ConfigError } from '../errors.js';
import { operatorRestartRules } from '../report/restart-hints.js';
import { DEFAULTS, type RawPassOptions, resolvePassSettings } from '../settings/pass-settings.js';
import { durationOption } from '../util/duration.js';

/** A share of one core in percent: more than 0, at most 100. */
function percentOption(value: string, flag: string): number {
  const percent = Number(value.replace(/%$/, ''));
  if (!Number.isFinite(percent) || percent <= 0 || percent > 100) {
    throw new ConfigError(`${flag} ${value}: expected a percentage of one CPU core above 0 and at most 100`, {
      subject: flag,
      hint: `e.g. ${flag} 2 (the default), or ${flag} 100 to pass every --interval whatever a pass costs`,
    });
  }
  return percent;
}

export async function daemonCommand(raw: RawPassOptions & { interval?: string; pollCpu?: string }): Promise<number> {
  const settings = resolvePassSettings(raw);
  operatorRestartRules(); // a malformed rule stops the daemon at start, not every pass
  // 1 s by default: a no-change pass costs a few ms of CPU (README, Performance); after failures the
  // scheduler backs off to max(interval, 30 s). The guide's 60 s still works: --interval 60. Down to
  // 0.05 s so that the bench's 10,000-pass memory run (PROFILE_DAEMON_PASSES) takes minutes, not hours.
  const intervalMs = durationOption(raw.interval ?? DEFAULTS.intervalS, '--interval', { minMs: 50, maxMs: 86_400_000 });
  // Without idle time between passes V8 lets the old generation grow to up to 4x its live size after
  // a full GC and never shrinks it back (65 MB anonymous at --interval 0.05 against 37 at 1 s); 1.5x
  // holds it at the 1 s level for no measurable CPU per pass. V8 reads the flag at every full GC, so
  // setting it now works. Only the daemon sets it: one-shot passes keep V8's default (README, Performance).
  v8.setFlagsFromString('--heap-growing-percent=50');
  // Under Node 24 V8's memory reducer never ran between passes (daemon/memory-reducer.ts): the idle
  // executable on the 50,000-entry tree held 214-219 MB RSS (RssAnon 144-149 MB, the old generation
  // at the last pass's size with its garbage). With the nudge it shrinks to the live heap some 16 s
  // after each pass: 147.7 MB RSS (RssAnon 77.6 MB), Node 24.22.3, bench/profile.ts section 6.
  keepMemoryReducerAwake();
  const pollCpuShare = percentOption(raw.pollCpu ?? String(DEFAULTS.pollCpuPercent), '--poll-cpu') / 100;
  return runDaemon(settings, { intervalMs, pollCpuShare });
}
