/**
 * Local edits of synced files on this (read-only) slave, from detection to
 * a true report of what became of each.
 *
 * Detection has two sources. The watcher reports most edits as they happen.
 * The content check, run with the daemon's periodic full scan (every 60 s),
 * compares every synced file with its record of the target's content
 * (taken at the previous check, and after each pass for the files that pass
 * wrote): it finds what the watcher cannot see (a write through a shared
 * mmap, an overflowed inotify queue) and what the quick check cannot (an
 * in-place edit whose size and mtime were put back). The record keeps, per
 * file, its hash and the stat identity it had when hashed (device, inode,
 * size, mtime, ctime: local/content-hashes.ts); a file whose
 * identity is unchanged is not read again, so a check costs the scan's
 * lstat per file plus reading what changed. Any edit changes the identity:
 * ctime cannot be set by users, so an edit with size and mtime put back
 * moves it, and so does the first write through a shared mmap after
 * writeback; a file changed less than a minute before it was hashed has no
 * identity recorded and is read again at the next check (the same clock
 * tick, pages still writable through a mapping). The record is kept in the
 * state dir (state/content-record.ts), so the first check after a restart
 * also finds what changed while the daemon was down: an edit then moved
 * ctime too. A record without identities (an older version's) is used all
 * the same: every file is read once and compared, and nothing is noted
 * falsely.
 *
 * Correction: a noted path is not trusted to the quick check. The next pass
 * fetches it again and compares the bytes with the slave's (like a racy
 * file), so a same-size, same-mtime edit is undone too. After that pass each
 * noted path gets one record saying what happened: "corrected" only when the
 * pass replaced it, "matches the master" when its bytes were already the
 * master's. A failed or skipped (paused) pass claims nothing: the paths stay
 * noted for the next one.
 *
 * A pass killed in its commit or right after it, before this record took in
 * what it wrote, must not leave every file it wrote looking edited: before
 * the commit's first rename the record is saved with what the commit is
 * about to leave at each path (`incoming`: the staged bytes' hash, or none
 * for a deletion). The next check takes a file holding either its recorded
 * or its incoming content for the master's (the commit may have stopped
 * anywhere, and a daemon's check runs before its pass rolls the journal
 * forward; a one-shot pass's, after); anything else is a local edit as
 * before. The pass's endPass records what it wrote and drops `incoming`.
 *
 * One-shot passes (`sync`, the timer's pass every minute, `resume --now`)
 * run the same content check at their start and compare what it notes in
 * that very pass. The saved record leaves out every path still in question,
 * so a path noted by a pass that then failed, was skipped or was killed is
 * noted again by the next check, whichever process runs it.
 *
 * Shared by the daemon and one-shot passes, so it lives beneath both.
 */

import type { Stats } from 'node:fs';
import { basename, join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describeError } from '../errors.js';
import type { Filter } from '../filter/types.js';
import { hashFile, type StatIdentity, sameIdentity, statIdentityOf } from '../local/content-hashes.js';
import { loadIdNames } from '../local/ids.js';
import type { KnownTarget } from '../local/known-target.js';
import { lstatIfPresent } from '../local/lstat.js';
import { scanTarget, type TargetScan } from '../local/scan.js';
import { isTempName } from '../local/temp-names.js';
import type { PassResult } from '../pass/types.js';
import type { Logger } from '../report/logger.js';
import { contentRecordPath, type IncomingContent, loadContentRecord, type RecordedContent, saveContentRecord } from '../state/content-record.js';

export type DetectedBy = 'watcher' | 'content check';

export const LOCAL_EDIT_MESSAGES = {
  noted: 'synced file changed locally; slaves are read-only: the next pass compares it with the master and corrects it',
  notedForThisPass: 'synced file changed locally; slaves are read-only: this pass compares it with the master and corrects it',
  corrected: 'local change corrected',
  matched: 'local change checked: the file matches the master, nothing to correct',
} as const;

/** Past this many records about single paths in one check or one pass, the rest are counted in one record. */
const PATH_RECORDS_PER_BATCH = 20;

/**
 * How long the check hashes before it lets the event loop run: a one-shot pass's SSH handshake
 * proceeds meanwhile (each of its steps needs the loop for a moment), and so do a daemon's timers.
 */
const HASHING_TURN_MS = 2;

/** The content check needs no owner names: it only reads files. */
const NO_NAMES = { userById: new Map<number, string>(), groupById: new Map<number, string>() };

export interface LocalEditsOptions {
  readonly targetDir: string;
  /** Where the content record is kept across restarts. */
  readonly stateDir: string;
  readonly filter: Filter;
  readonly logger: Logger;
  /** How often the content check runs (the full-scan period). */
  readonly contentCheckEveryMs: number;
  /** Monotonic milliseconds. */
  readonly now?: () => number;
  /** Wall-clock milliseconds, the clock file ctimes are stamped with. */
  readonly wallNow?: () => number;
  /** Reads and hashes a file (a test counts the reads). */
  readonly hashFile?: (abs: string) => string | null;
  /** A one-shot pass: what the content check notes is compared by the pass that follows at once. */
  readonly oneShot?: boolean;
}

export class LocalEdits {
  /** Paths the next pass compares with the master, and what noticed each. */
  private pending = new Map<string, DetectedBy>();
  /** What the running pass compares. */
  private checking = new Map<string, DetectedBy>();
  /** Watcher events during a pass: the pass's own commit or an operator; sorted out when it ends. */
  private readonly duringPass = new Set<string>();
  private passing = false;
  /** Content hash (and stat identity) per synced file, as of the last content check or our own write. */
  private readonly hashes: Map<string, RecordedContent>;
  /** What the commit in progress (or one cut short) leaves at each path it changes; null: no file. */
  private readonly incoming: Map<string, string | null>;
  /** A failed save of the record was logged (and none has succeeded since). */
  private saveFailureSaid = false;
  /** False until the first content check (or a record from an earlier run): before it there is nothing to compare with. */
  private recorded: boolean;
  /** The record changed since it was last saved. */
  private unsaved = false;
  private checkedAt = -Infinity;
  private readonly now: () => number;
  private readonly wallNow: () => number;
  private readonly hashFile: (abs: string) => string | null;
  /** Records about single paths in the running check or pass, and those left out (per message). */
  private batch: { logged: number; more: Map<string, { level: 'info' | 'warn'; count: number }> } | null = null;

  constructor(private readonly opts: LocalEditsOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.wallNow = opts.wallNow ?? Date.now;
    this.hashFile = opts.hashFile ?? hashFile;
    const saved = loadContentRecord(opts.stateDir, opts.targetDir, (why) =>
      opts.logger.warn({
        msg: `content record ${contentRecordPath(opts.stateDir)} cannot be used (${why}): this check records the target as it finds it, so an edit made since the last pass that kept its size and mtime goes unnoticed; the record is written afresh`,
      }),
    );
    this.recorded = saved !== null;
    // Paths excluded since the record was written are none of our business now.
    const ours = ([path]: [string, unknown]): boolean => !opts.filter.isExcludedPath(path, false) && !isTempName(basename(path));
    this.hashes = new Map([...(saved?.files ?? [])].filter(ours));
    this.incoming = new Map([...(saved?.incoming ?? [])].filter(ours));
  }

  /** A watcher event for a synced path that is not the pass's own write. True: a corrective pass is wanted. */
  watcherSaw(path: string): boolean {
    if (this.passing) {
      this.duringPass.add(path);
      return false;
    }
    this.note(path, 'watcher');
    return true;
  }

  contentCheckDue(): boolean {
    return this.now() - this.checkedAt >= this.opts.contentCheckEveryMs;
  }

  /**
   * Hashes every synced file whose stat identity changed and notes each whose content did; returns how many were noted.
   * With `knownTarget` (the daemon's), its scan is the full scan the next pass plans against: the target is scanned once.
   */
  async checkContent(knownTarget?: KnownTarget): Promise<number> {
    return (await this.inBatch(() => this.compareContent({ knownTarget, forPlanning: knownTarget !== undefined }))).noted;
  }

  /** A one-shot pass's check: its scan (with owner names) is the one the pass then plans against. */
  async checkContentForPass(): Promise<TargetScan> {
    return (await this.inBatch(() => this.compareContent({ forPlanning: true }))).scan;
  }

  private async compareContent({
    knownTarget,
    forPlanning,
  }: {
    knownTarget?: KnownTarget;
    forPlanning: boolean;
  }): Promise<{ noted: number; scan: TargetScan }> {
    this.checkedAt = this.now();
    // The scan's own lstat of each file tells whether it is the file that was hashed: nothing is stat-ed twice.
    const wallNow = this.wallNow();
    /** The files to read, with the identity each had before the read (none when too recent to trust). */
    const toRead = new Map<string, StatIdentity | undefined>();
    const onFileStat = (path: string, st: Stats) => {
      const stat = this.hashes.get(path)?.stat;
      if (!stat || !sameIdentity(stat, st)) toRead.set(path, statIdentityOf(st, wallNow));
    };
    // A scan the pass may plan against needs owner names, as the pass's own scan has; the check alone needs none.
    const names = forPlanning ? await loadIdNames() : NO_NAMES;
    const token = knownTarget?.startScan();
    const scan = await scanTarget(this.opts.targetDir, this.opts.filter, { names, onFileStat });
    if (knownTarget && token) knownTarget.remember(scan, token);
    const { tree } = scan;
    let noted = 0;
    const vanished = new Set<string>();
    let turnEnds = performance.now() + HASHING_TURN_MS;
    for (const [path, stat] of toRead) {
      if (performance.now() >= turnEnds) {
        await nextTurn();
        turnEnds = performance.now() + HASHING_TURN_MS;
      }
      // The identity was taken before the read: a change during the read moves it, and the next check reads again.
      const hash = this.hashFile(join(this.opts.targetDir, path));
      if (hash === null) {
        vanished.add(path); // gone since the listing: a deletion, noted below or by the watcher
        continue;
      }
      const before = this.hashes.get(path);
      this.setHash(path, { hash, stat });
      // A file new since the last check, or one that vanished, is a change too (a missed inotify event).
      // What an interrupted commit was writing there is not: the master's content, as the recorded one.
      if (this.recorded && before?.hash !== hash && this.incoming.get(path) !== hash) noted += this.noteOnce(path);
    }
    for (const path of [...this.hashes.keys()]) {
      if (tree.get(path)?.type === 'file' && !vanished.has(path)) continue;
      this.setHash(path, null);
      if (this.recorded && this.incoming.get(path) !== null) noted += this.noteOnce(path);
    }
    this.recorded = true;
    await this.save();
    return { noted, scan };
  }

  /** The paths this pass must compare with the master whatever their size and mtime. */
  startPass(): ReadonlySet<string> {
    this.passing = true;
    this.checking = this.pending;
    this.pending = new Map();
    return new Set(this.checking.keys());
  }

  /**
   * Before the commit's first rename (pass/types.ts, PassHooks.recordIncoming): saves the record with what
   * the commit leaves at each path, so a check after a kill at any point from here to endPass's save takes
   * it for the master's content. Not fsynced: a kill loses no page cache, and the commit journal's fsync
   * that follows carries the record's rename with it on ext4 (data=ordered); elsewhere a power loss can
   * cost the false alarms this prevents, and an fsync here cost every committing pass 7-13 ms (a one-file
   * pass, journaled ext4). Never throws: a record that cannot be saved costs at most a false alarm, and
   * the commit goes on.
   */
  async recordIncoming(incoming: IncomingContent): Promise<void> {
    // No record yet: the next check notes nothing anyway (the first check records, it does not compare).
    if (!this.recorded) return;
    for (const [path, hash] of incoming) {
      // A deletion matters only for a file the record names; a path in question is not in the saved record at all.
      if (hash !== null || this.hashes.has(path)) this.incoming.set(path, hash);
    }
    if (this.incoming.size === 0) return;
    this.unsaved = true;
    await this.save();
  }

  /**
   * Reports what became of each path the pass compared and records the
   * content the pass wrote; `result` is undefined when the pass threw.
   * True when a path is still in question and another pass should follow now.
   */
  endPass(result: PassResult | undefined): Promise<boolean> {
    this.passing = false;
    return this.inBatch(() => this.settlePass(result));
  }

  private async settlePass(result: PassResult | undefined): Promise<boolean> {
    const checked = this.checking;
    this.checking = new Map();
    const during = new Set(this.duringPass);
    this.duringPass.clear();
    const changed = new Set(result?.changedPaths ?? []);
    if (result?.result !== 'ok') {
      // Nothing claimed: a failed pass is retried by the schedule, a skipped one waits for resume. Put back
      // before anything is saved: the save leaves paths in question out, else their edited bytes would be
      // saved as the record and the edit never seen again.
      for (const [path, by] of checked) if (!this.pending.has(path)) this.pending.set(path, by);
      for (const path of during) if (!changed.has(path)) this.note(path, 'watcher');
      // What a partial commit made live is recorded below; what its journal still has to write keeps its
      // incoming content until the pass that completes the journal ends ok.
      this.dropIncoming(changed);
      this.recordWritten(changed);
      await this.save();
      return false;
    }
    // What the pass's commit made live is recorded below (as staged, or read from disk): its incoming
    // content has served, and so has any left by an earlier pass's journal, which this pass completed.
    this.dropIncoming();
    if (checked.size > 0) this.unsaved = true; // settled paths go back into the saved record
    for (const [path, by] of checked) {
      // Edited again while the pass ran and left alone by its commit: still in question.
      if (during.has(path) && !changed.has(path)) this.note(path, by);
      else this.logPath('info', changed.has(path) ? LOCAL_EDIT_MESSAGES.corrected : LOCAL_EDIT_MESSAGES.matched, path, by);
    }
    // Events for paths the pass wrote are its own commit; any other path was edited by someone else.
    for (const path of during) if (!changed.has(path) && !checked.has(path)) this.note(path, 'watcher');
    // What the pass wrote, and what it found equal to the master, is the master's content: the record from now on.
    this.recordWritten(new Set([...changed, ...[...checked.keys()].filter((path) => !this.pending.has(path))]), result.fetchedContent);
    await this.save();
    return this.pending.size > 0;
  }

  /** Forget the incoming content of `paths` (all of it without). */
  private dropIncoming(paths?: ReadonlySet<string>): void {
    const before = this.incoming.size;
    if (paths === undefined) this.incoming.clear();
    else for (const path of paths) this.incoming.delete(path);
    if (this.incoming.size !== before) this.unsaved = true;
  }

  private note(path: string, by: DetectedBy): void {
    if (this.pending.has(path)) return;
    this.logPath('warn', this.opts.oneShot ? LOCAL_EDIT_MESSAGES.notedForThisPass : LOCAL_EDIT_MESSAGES.noted, path, by);
    this.pending.set(path, by);
    this.unsaved = true; // the saved record leaves it out from now on
  }

  /** A restore of the whole target must not become thousands of lines: a batch lists 20 paths, then counts. */
  private logPath(level: 'info' | 'warn', msg: string, path: string, by: DetectedBy): void {
    if (this.batch && this.batch.logged >= PATH_RECORDS_PER_BATCH) {
      const more = this.batch.more.get(msg) ?? { level, count: 0 };
      this.batch.more.set(msg, { level, count: more.count + 1 });
      return;
    }
    if (this.batch) this.batch.logged++;
    this.opts.logger[level]({ msg, path, detectedBy: by });
  }

  private async inBatch<T>(run: () => Promise<T>): Promise<T> {
    this.batch = { logged: 0, more: new Map() };
    try {
      return await run();
    } finally {
      for (const [msg, { level, count }] of this.batch.more) this.opts.logger[level]({ msg: `${msg} (and ${count} more paths, not listed)`, count });
      this.batch = null;
    }
  }

  private noteOnce(path: string): number {
    if (this.pending.has(path)) return 0;
    this.note(path, 'content check');
    return 1;
  }

  /**
   * The bytes a pass wrote are the master's: they are the record from now on. `fetched` holds the hash
   * of the bytes the pass staged for a path: recorded as they are, without reading the file back, and
   * without a stat identity, so the next check reads the file once and compares: an edit made right
   * after the commit is then found, not recorded as the master's content. The caller saves.
   */
  private recordWritten(paths: ReadonlySet<string>, fetched?: ReadonlyMap<string, string>): void {
    if (!this.recorded || paths.size === 0) return;
    for (const path of paths) this.recordFile(path, fetched?.get(path));
    // A replaced or deleted directory took its files with it (they need not each be listed).
    for (const path of [...this.hashes.keys()]) if (!paths.has(path)) this.forgetIfGone(path);
  }

  /**
   * A fetched file is recorded as fetched, unlooked-at: if it is gone or replaced by now, the next check
   * finds that as it finds any edit. Another path is lstat-ed (synchronously: one local system call,
   * where a trip through libuv's thread pool costs several times its CPU) and read.
   */
  private recordFile(path: string, fetchedHash: string | undefined): void {
    if (fetchedHash !== undefined) {
      this.setHash(path, { hash: fetchedHash });
      return;
    }
    const abs = join(this.opts.targetDir, path);
    const st = lstatIfPresent(abs);
    if (!st?.isFile()) this.setHash(path, null);
    else {
      const hash = this.hashFile(abs);
      // Just written, its identity is too recent to trust: the next check reads it once more and records it.
      this.setHash(path, hash === null ? null : { hash, stat: statIdentityOf(st, this.wallNow()) });
    }
  }

  private forgetIfGone(path: string): void {
    if (!lstatIfPresent(join(this.opts.targetDir, path))?.isFile()) this.setHash(path, null);
  }

  private setHash(path: string, content: RecordedContent | null): void {
    const before = this.hashes.get(path);
    if (content === null ? !this.hashes.delete(path) : before?.hash === content.hash && sameRecordedIdentity(before.stat, content.stat)) return;
    if (content !== null) this.hashes.set(path, content);
    this.unsaved = true;
  }

  private async save(): Promise<void> {
    if (!this.unsaved) return;
    this.unsaved = false;
    // A path still in question is left out: whoever checks next, after a restart or in the next one-shot pass, notes it again.
    // Its incoming content too: a noted path the commit corrects is noted again after a kill, and then reported.
    const inQuestion = (path: string): boolean => this.pending.has(path) || this.checking.has(path);
    const settled = new Map([...this.hashes].filter(([path]) => !inQuestion(path)));
    const incoming = new Map([...this.incoming].filter(([path]) => !inQuestion(path)));
    try {
      await saveContentRecord(this.opts.stateDir, this.opts.targetDir, settled, incoming);
      this.saveFailureSaid = false;
    } catch (err) {
      // Said once until a save succeeds again (a pass saves up to three times). A daemon keeps it in memory.
      if (this.saveFailureSaid) return;
      this.saveFailureSaid = true;
      const file = contentRecordPath(this.opts.stateDir);
      const meanwhile = this.opts.oneShot
        ? 'the next check reads every synced file once more and may warn about files that did not change'
        : 'the daemon keeps it in memory until it restarts';
      this.opts.logger.warn({
        msg: `cannot save the content record ${file}: ${meanwhile}; make the path a writable file (or remove it)`,
        error: describeError(err),
      });
    }
  }
}

function sameRecordedIdentity(a: StatIdentity | undefined, b: StatIdentity | undefined): boolean {
  if (!a || !b) return a === b;
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}
