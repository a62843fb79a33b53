/**
 * `/var/log/xroad/slave-sync.log` in rsync's `--log-file` format, so the
 * monitoring and logrotate set up for the guide's rsync job keep working.
 *
 * Like rsync (log.c logfile_open()): opened with "a" per pass, mode 0644
 * before umask, re-created if logrotate moved it away (`nocreate` relies on
 * this), and never fatal: if it cannot be opened or written, the pass goes
 * on and the caller gets a warning to put on the structured log instead.
 * The parent directory is not created: a missing /var/log/xroad is an
 * operator error that should show.
 *
 * Every line is `YYYY/MM/DD HH:MM:SS [PID] message` in local time. Unlike
 * rsync, which writes item lines from its receiver process (main PID + 2),
 * all lines carry our one PID.
 */
import { type FileHandle, open, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { ExitCodeValue } from '../errors.js';
import type { Change } from '../plan/types.js';
import { escapeControls } from '../util/output.js';
import { errorLines, itemizePlan, totalSizeLine } from './itemize.js';

export interface RsyncLogOptions {
  /** Clock, for tests. */
  readonly now?: () => Date;
  /** PID shown in every line; defaults to ours. */
  readonly pid?: number;
  /** Our version, shown on the error line. */
  readonly version?: string;
  /** Called with a one-line explanation when the log cannot be opened or written. */
  readonly onWarning?: (message: string) => void;
  /** Open the file only when the first line is written (a daemon pass that logs nothing never opens it). */
  readonly lazy?: boolean;
}

const pad2 = (n: number): string => String(n).padStart(2, '0');

/** rsync's timestring(): `%4d/%02d/%02d %02d:%02d:%02d` in local time. */
export function formatTimestamp(date: Date): string {
  const day = `${date.getFullYear()}/${pad2(date.getMonth() + 1)}/${pad2(date.getDate())}`;
  return `${day} ${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())}`;
}

export class RsyncLogFile {
  readonly path: string;
  private handle: FileHandle | undefined;
  private openAttempted = false;
  private pending: string[] = [];
  private flushScheduled = false;
  private writing: Promise<void> = Promise.resolve();
  private closed = false;
  private lastWarning: string | undefined;
  private readonly now: () => Date;
  private readonly pid: number;
  private readonly version: string | undefined;
  private readonly onWarning: ((message: string) => void) | undefined;

  private constructor(path: string, opts: RsyncLogOptions) {
    this.path = path;
    this.now = opts.now ?? (() => new Date());
    this.pid = opts.pid ?? process.pid;
    this.version = opts.version;
    this.onWarning = opts.onWarning;
  }

  /** Opens `path` for appending; never throws (see `warning`). */
  static async open(path: string, opts: RsyncLogOptions = {}): Promise<RsyncLogFile> {
    const log = new RsyncLogFile(path, opts);
    if (!opts.lazy) await log.openHandle();
    return log;
  }

  /** Why lines are not reaching the file, if they are not. */
  get warning(): string | undefined {
    return this.lastWarning;
  }

  /** One message, prefixed and escaped; written on the next flush. `at`: when it happened, if earlier. */
  line(message: string, at: Date = this.now()): void {
    if (this.closed) return;
    this.pending.push(`${formatTimestamp(at)} [${this.pid}] ${escapeControls(message)}\n`);
    this.scheduleFlush();
  }

  receivingFileList(at?: Date): void {
    this.line('receiving file list', at);
  }

  /** A plan's item lines (itemizePlan gives each the context of its neighbours). */
  items(changes: readonly Change[]): void {
    for (const text of itemizePlan(changes)) this.line(text);
  }

  /** The pass did not run (e.g. `/var/tmp/xroad/sync-disabled exists`). rsync never wrote this. */
  skipped(reason: string): void {
    this.line(`sync skipped: ${reason}`);
  }

  success(sent: number, received: number, totalSize: number, at?: Date): void {
    this.line(totalSizeLine(sent, received, totalSize), at);
  }

  failure(err: unknown, exitCode: ExitCodeValue): void {
    for (const text of errorLines(err, exitCode, this.version)) this.line(text);
  }

  /** Writes every line logged so far, then closes; later lines are dropped. */
  async close(): Promise<void> {
    this.closed = true;
    this.writeBatch();
    this.writing = this.writing.then(() => this.closeHandle());
    await this.writing;
  }

  private async openHandle(): Promise<void> {
    this.openAttempted = true;
    try {
      this.handle = await open(this.path, 'a', 0o644);
      this.lastWarning = undefined;
      await handNewLogToDirOwner(this.handle, this.path);
    } catch (err) {
      this.warn(`failed to open log-file ${this.path}: ${(err as Error).message}; not logging to it this pass`);
    }
  }

  private async closeHandle(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    if (!handle) return;
    try {
      await handle.close();
    } catch (err) {
      this.warn(`closing log-file ${this.path} failed: ${(err as Error).message}`);
    }
  }

  /** Lines logged in one synchronous stretch go out in one write. */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => this.writeBatch());
  }

  private writeBatch(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const text = this.pending.join('');
    this.pending = [];
    // Chained so batches land in order; a failed write drops its batch, not the pass.
    this.writing = this.writing.then(() => this.append(text));
  }

  private async append(text: string): Promise<void> {
    if (!this.openAttempted) await this.openHandle();
    if (!this.handle) return;
    try {
      await this.handle.appendFile(text, 'utf8');
    } catch (err) {
      this.warn(`writing log-file ${this.path} failed: ${(err as Error).message}`);
    }
  }

  private warn(message: string): void {
    this.lastWarning = message;
    this.onWarning?.(message);
  }
}

/**
 * After a rotation with `nocreate` the first writer creates the log. When that
 * is a command run as root (`sudo xroad-sync sync`), the service user's
 * daemon could not append to it until the next rotation: a new, empty,
 * root-owned log goes to the owner of its directory (/var/log/xroad: xroad).
 */
async function handNewLogToDirOwner(handle: FileHandle, path: string): Promise<void> {
  if (process.geteuid?.() !== 0) return;
  const [file, dir] = await Promise.all([handle.stat(), stat(dirname(path))]).catch(() => [null, null]);
  if (!file || !dir || file.uid !== 0 || file.size !== 0 || dir.uid === 0) return;
  await handle.chown(dir.uid, file.gid === 0 ? dir.gid : file.gid).catch(() => undefined); // best effort: the log is never fatal
}
