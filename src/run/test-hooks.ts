/**
 * Fault injection for the test suites, off unless XROAD_SYNC_TEST_HOOK is
 * set: `kill@<point>[:<n>]` SIGKILLs this process the n-th time (default 1st)
 * the pass reaches <point> (see PassPoint); `pause@<point>[:<n>]` stops there
 * for XROAD_SYNC_TEST_PAUSE_MS (default 60000) so a test can act mid-pass,
 * or until the process gets SIGUSR2: a test releases it when what it waited
 * for has happened, rather than guessing a pause long enough on a loaded machine.
 */
import type { PassPoint } from '../pass/types.js';
import { notice } from '../util/output.js';

/** The pause being held, released by SIGUSR2. */
let releaseHeld: (() => void) | undefined;
let listening = false;

/**
 * One SIGUSR2 listener for the process's life (a daemon makes hooks per pass). One removed after each
 * release would leave signal-exit (write-file-atomic, mid-write) alone on SIGUSR2, and it re-raises a
 * signal nobody else listens for: the release would end the process.
 */
function listenForRelease(): void {
  if (listening) return;
  listening = true;
  process.on('SIGUSR2', () => releaseHeld?.());
}

export function testHooksFromEnv(env = process.env): ((point: PassPoint, path?: string) => Promise<void>) | undefined {
  const spec = env.XROAD_SYNC_TEST_HOOK;
  if (!spec) return undefined;
  const match = /^(kill|pause)@([a-z-]+)(?::(\d+))?$/.exec(spec);
  if (!match) throw new Error(`XROAD_SYNC_TEST_HOOK: cannot parse "${spec}"`);
  const [, action, wanted, nth] = match;
  const target = Number(nth ?? 1);
  const pauseMs = Number(env.XROAD_SYNC_TEST_PAUSE_MS ?? 60_000);
  let seen = 0;
  if (action === 'pause') listenForRelease();
  return async (point) => {
    if (point !== wanted || ++seen !== target) return;
    if (action === 'kill') process.kill(process.pid, 'SIGKILL');
    const released = new Promise<void>((resolve) => {
      const release = (): void => {
        clearTimeout(timer);
        releaseHeld = undefined;
        resolve();
      };
      const timer = setTimeout(release, pauseMs);
      releaseHeld = release;
    });
    // Said once the release is listened for: a test that signals as soon as it reads this line must not
    // find SIGUSR2 still at its default action (which ends the process).
    notice(`test hook paused at ${point}`);
    await released;
  };
}

/**
 * XROAD_SYNC_TEST_FULL_SCAN_MS: the daemon's full-scan period (60 s), shortened
 * so a test can see a change only the full scan finds corrected in seconds.
 */
export function fullScanPeriodFromEnv(env = process.env): number | undefined {
  const ms = Number(env.XROAD_SYNC_TEST_FULL_SCAN_MS);
  return Number.isInteger(ms) && ms > 0 ? ms : undefined;
}

/**
 * XROAD_SYNC_TEST_HANG_SIGNAL (e.g. SIGUSR2): on that signal the process
 * busy-loops, its event loop blocked, for XROAD_SYNC_TEST_HANG_MS (default
 * 120 s), so a test can see systemd's watchdog restart a hung daemon.
 */
export function hangOnSignalFromEnv(env = process.env): void {
  const signal = env.XROAD_SYNC_TEST_HANG_SIGNAL;
  if (!signal) return;
  const hangMs = Number(env.XROAD_SYNC_TEST_HANG_MS ?? 120_000);
  process.on(signal as NodeJS.Signals, () => {
    notice(`test hook: event loop blocked for ${hangMs} ms`);
    const until = performance.now() + hangMs;
    while (performance.now() < until) {
      // blocked on purpose: no timer, no I/O, no watchdog ping
    }
  });
}
