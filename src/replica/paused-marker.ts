/**
 * PostgreSQL does not record when replay was paused. When xroad-sync pauses
 * it, it notes the time in the state dir, so `status` can say "paused since"
 * and `status --check` can alert on a pause that outlived its limit. A pause
 * made by hand (psql) has no marker: its start is reported as unknown.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const NAME = 'serverconf-replay-paused';

export const pausedMarkerPath = (stateDir: string): string => join(stateDir, NAME);

/** Keeps an existing marker: a second pause does not restart the clock. */
export async function markReplayPaused(stateDir: string, at = new Date()): Promise<void> {
  await mkdir(stateDir, { recursive: true });
  await writeFile(pausedMarkerPath(stateDir), `${at.toISOString()}\n`, { flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
}

export async function clearReplayPaused(stateDir: string): Promise<void> {
  await rm(pausedMarkerPath(stateDir), { force: true });
}

export async function replayPausedSince(stateDir: string): Promise<string | null> {
  const text = await readFile(pausedMarkerPath(stateDir), 'utf8').catch(() => null);
  const at = text?.trim();
  return at && !Number.isNaN(Date.parse(at)) ? at : null;
}
