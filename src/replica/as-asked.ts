/**
 * Replay as the operator asked it: `pause --serverconf` records the ask
 * (paused-marker.ts) before it pauses, so a crash between the two still
 * leaves the ask for `status --check` to compare; `resume` clears it once
 * replay runs. PostgreSQL forgets a pause when the standby restarts, and the
 * comparison is what notices.
 */
import { LocalIoError } from '../errors.js';
import { clearReplayPaused, markReplayPaused, pausedMarkerPath } from './paused-marker.js';
import type { ReplayState, Replica, StateChange } from './replica.js';

export interface AskedChange extends StateChange {
  /** The ask could not be recorded: the pause holds, but monitoring cannot see a restart undo it. */
  readonly unrecorded: LocalIoError | null;
}

/** Records the ask, then pauses; a pause that failed leaves no ask behind that this call made. */
export async function pauseReplayAsAsked(replica: Replica, stateDir: string): Promise<AskedChange> {
  let created = false;
  let unrecorded: LocalIoError | null = null;
  try {
    created = await markReplayPaused(stateDir);
  } catch (cause) {
    unrecorded = new LocalIoError(`serverconf replay paused, but the pause could not be recorded in ${pausedMarkerPath(stateDir)}`, {
      subject: pausedMarkerPath(stateDir),
      cause,
      hint: `status --check cannot tell when a standby restart resumes replay: let this user write ${stateDir} (or pass --state-dir), then run pause --serverconf again`,
    });
  }
  try {
    const change = await replica.pauseReplay();
    if (change.after === 'running' && created) await clearReplayPaused(stateDir);
    return { ...change, unrecorded };
  } catch (err) {
    if (created) await clearReplayPaused(stateDir).catch(() => undefined);
    throw err;
  }
}

/** Resumes, then forgets the ask; a marker that cannot be removed is a warning (status --check then names it). */
export async function resumeReplayAsAsked(replica: Replica, stateDir: string): Promise<StateChange & { unforgotten: unknown }> {
  const change = await replica.resumeReplay();
  const unforgotten = await clearReplayPaused(stateDir).then(
    () => null,
    (err: unknown) => err,
  );
  return { ...change, unforgotten };
}

/** The line for a replica that does not do what was asked, with the fix; null when it does. */
export function replayNotAsAsked(replay: ReplayState | null, pauseAskedAt: string | null): string | null {
  if (pauseAskedAt === null || replay !== 'running') return null;
  return (
    `serverconf replay running, but pause --serverconf asked for it paused at ${pauseAskedAt} (a standby restart resumes replay): ` +
    `run xroad-sync pause --serverconf to pause it again, or xroad-sync resume --serverconf-only if the pause is over`
  );
}
