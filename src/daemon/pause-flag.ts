/**
 * The daemon's view of the pause flag. A watch on the flag's directory dies
 * with that directory (tmpfiles ageing of /var/tmp, an operator re-creating
 * /var/tmp/xroad with another owner), so besides the watcher's events the
 * flag is looked up by path once a second: two stat calls. Every change of
 * what the daemon sees is written to flag-seen.json, which `pause` waits for.
 *
 * A flag directory with no links left is a deleted one that a bind mount
 * keeps alive in this process's mount namespace (a unit with PrivateTmp= and
 * BindPaths=/var/tmp/xroad): no flag made in the new directory can ever reach
 * this process, so it reports `stale` and the daemon exits for systemd to
 * start it again.
 */
import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import { describeError } from '../errors.js';
import { writeFlagSeen } from '../state/flag-seen.js';

const LOOKUP_EVERY_MS = 1000;

export interface PauseFlagEvents {
  /** The flag appeared or went (not called for the state found at start). */
  change(present: boolean): void;
  /** The flag directory this process sees was deleted; `why` says so for the operator. */
  stale(why: string): void;
  /** flag-seen.json could not be written (pause will then report the daemon as not answering). */
  writeFailed(error: string): void;
}

export class PauseFlag {
  private seen: number | null | undefined; // the flag's inode, null when absent, undefined before the first look
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private staleReported = false;
  /** The inode of a flag directory seen with no links left at the last look. */
  private deletedDir: number | undefined;

  constructor(
    private readonly flagFile: string,
    private readonly stateDir: string,
    private readonly on: PauseFlagEvents,
  ) {}

  /** Looks once (recording what it finds), then once a second until `stop`. */
  async start(): Promise<void> {
    this.look();
    this.timer = setInterval(() => this.look(), LOOKUP_EVERY_MS);
    await this.writing;
  }

  /** Resolves when the last acknowledgement is written. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.writing;
  }

  /** Look now (the watcher saw something in the flag's directory). */
  look(): void {
    if (this.staleReported) return;
    const dir = statSync(dirname(this.flagFile), { throwIfNoEntry: false });
    // A lookup racing an `rm -rf` can meet the dying directory once; a pinned one stays at nlink 0.
    const deleted = dir?.isDirectory() && dir.nlink === 0 ? dir.ino : undefined;
    if (deleted !== undefined && deleted === this.deletedDir) {
      this.staleReported = true;
      this.on.stale(
        `the flag directory ${dirname(this.flagFile)} this daemon sees was deleted (a bind mount of the unit's sandbox keeps the old one): a pause made in the new directory would never reach it`,
      );
      return;
    }
    this.deletedDir = deleted;
    const ino = statSync(this.flagFile, { throwIfNoEntry: false })?.ino ?? null;
    if (ino === this.seen) return;
    const first = this.seen === undefined;
    const wasPresent = this.seen !== null && !first;
    this.seen = ino;
    const seen = { pid: process.pid, flagFile: this.flagFile, ino, seenAt: new Date().toISOString() };
    this.writing = this.writing.then(() => writeFlagSeen(this.stateDir, seen)).catch((err: unknown) => this.on.writeFailed(describeError(err)));
    if (!first && wasPresent !== (ino !== null)) this.on.change(ino !== null);
  }
}
