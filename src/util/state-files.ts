/**
 * Every file xroad-sync keeps in --state-dir (default /var/lib/xroad-sync):
 * its name, what it is for and who writes it. Modules take their paths from
 * here, so this table is the whole list.
 */
import { join } from 'node:path';

export interface StateFile {
  readonly name: string;
  readonly purpose: string;
  readonly writtenBy: string;
}

export const STATE_FILES = {
  passLock: {
    name: 'sync.lock',
    purpose: 'one pass at a time per state dir; names the holder (pid, start time, boot, purpose)',
    writtenBy: 'every pass (sync, daemon, resume --now) and pause while it completes an interrupted commit',
  },
  daemonLock: {
    name: 'daemon.lock',
    purpose: 'one daemon per state dir; status reads it to tell whether a daemon runs',
    writtenBy: 'the daemon, for its lifetime',
  },
  status: {
    name: 'status.json',
    purpose: 'the last pass and the last success, the master-state digest (status, status --check)',
    writtenBy: 'each pass when it ends',
  },
  commitJournal: {
    name: 'commit-journal.json',
    purpose: 'the commit in progress, so one cut short by a kill or power loss is rolled forward',
    writtenBy: 'the commit; removed when it is done; rolled forward by the next pass or pause',
  },
  racyFiles: {
    name: 'racy-files.json',
    purpose: 'files taken while their master mtime was too recent to trust: fetched again next pass',
    writtenBy: 'each pass',
  },
  contentHashes: {
    name: 'content-hashes.json',
    purpose: 'a hash of each synced file, to find local edits that keep size and mtime (or were made while no pass ran)',
    writtenBy: 'the daemon and one-shot passes, when the record changes and before a commit (what it is about to write)',
  },
  flagSeen: {
    name: 'flag-seen.json',
    purpose: 'the pause flag as the running daemon sees it; pause waits for it to match',
    writtenBy: 'the daemon, whenever what it sees changes',
  },
  replayPaused: {
    name: 'serverconf-replay-paused',
    purpose: 'when pause --serverconf asked for replay paused (PostgreSQL keeps no record)',
    writtenBy: 'pause --serverconf; removed by resume',
  },
} as const satisfies Record<string, StateFile>;

/** The path of one of the state dir's files. */
export function stateFilePath(stateDir: string, file: keyof typeof STATE_FILES): string {
  return join(stateDir, STATE_FILES[file].name);
}
