/**
 * PostgreSQL keeps a replay pause only in memory: it neither records when
 * replay was paused nor keeps the pause across a restart of the standby (redo
 * starts unpaused). So when xroad-sync pauses replay it notes the operator's
 * ask in the state dir, kept until a resume: `status` says "paused since",
 * `status --check` alerts on a pause that outlived its limit and on a replica
 * that runs although a pause was asked (a standby restarted mid-upgrade), and
 * `pause --serverconf` again restores it. A pause made by hand (psql) has no
 * marker: its start is reported as unknown.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { stateFilePath } from '../util/state-files.js';

export const pausedMarkerPath = (stateDir: string): string => stateFilePath(stateDir, 'replayPaused');

/** Keeps an existing marker: a second pause does not restart the clock. true when this call created it. */
export async function markReplayPaused(stateDir: string, at = new Date()): Promise<boolean> {
  await mkdir(stateDir, { recursive: true });
  return writeFile(pausedMarkerPath(stateDir), `${at.toISOString()}\n`, { flag: 'wx' }).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
      return false;
    },
  );
}

export async function clearReplayPaused(stateDir: string): Promise<void> {
  await rm(pausedMarkerPath(stateDir), { force: true });
}

/** When the operator asked xroad-sync to pause replay, or null when no pause is asked. */
export async function replayPausedSince(stateDir: string): Promise<string | null> {
  const text = await readFile(pausedMarkerPath(stateDir), 'utf8').catch(() => null);
  const at = text?.trim();
  return at && !Number.isNaN(Date.parse(at)) ? at : null;
}
