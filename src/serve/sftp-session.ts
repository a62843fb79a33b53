/**
 * One SFTP channel of the embedded master: a read-only SFTP v3 server in JS
 * over a RootedPaths. Replies follow OpenSSH's sftp-server (lstat listings
 * with `.` and `..`, at most 100 names per READDIR, longnames from
 * attrs.ts) so a client cannot tell it from the real thing, except through
 * the fault-injection hooks tests install.
 */
import { promises as fsp, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { posix } from 'node:path';
import type { Attributes, FileEntry, SFTPWrapper } from 'ssh2';
import type { IdNames } from '../local/ids.js';
import { attrsOf, longnameOf, STATUS, statusOfErrno, statusText, WRITE_OPEN_FLAGS } from './attrs.js';
import { OutsideRootError, type RootedPaths } from './rooted-paths.js';

/** Never answer the request ('stall') or destroy the TCP connection under it ('cut'). */
export type Fault = 'stall' | 'cut';

export type SftpOp = 'realpath' | 'stat' | 'lstat' | 'fstat' | 'open' | 'read' | 'close' | 'opendir' | 'readdir' | 'readlink';

type MaybePromise<T> = T | Promise<T>;

/**
 * Fault injection for tests. Every path a hook sees is relative to the served
 * root ('' = the root, 'conf.d/local.ini'), and only requests that stayed
 * inside the root reach a hook.
 */
export interface ServerHooks {
  /**
   * Before any request is served. A Fault applies it; a number answers with
   * that SFTP status code (e.g. 3 = PERMISSION_DENIED); undefined serves normally.
   */
  onRequest?(op: SftpOp, path: string): MaybePromise<Fault | number | undefined>;
  /** Rewrite one READDIR reply (≤ 100 entries, `.`/`..` included) before it is sent: bad names, lying sizes. */
  rewriteListing?(dir: string, entries: FileEntry[]): FileEntry[];
  /** Before a READ: a Fault, or bytes to send instead of the file's (empty Buffer = EOF); undefined reads the file. */
  onRead?(path: string, offset: number, length: number): MaybePromise<Fault | Buffer | undefined>;
  /** Rewrite what STAT, LSTAT or FSTAT reports. */
  rewriteAttrs?(path: string, attrs: Attributes, op: 'stat' | 'lstat' | 'fstat'): Attributes;
}

export interface SessionContext {
  paths: RootedPaths;
  ids: IdNames;
  hooks: ServerHooks;
  /** Destroy the connection's socket without an SSH disconnect. */
  cut(): void;
  log(msg: string): void;
}

interface OpenFile {
  kind: 'file';
  rel: string;
  fd: FileHandle;
}

interface OpenDir {
  kind: 'dir';
  rel: string;
  real: string;
  names: string[];
  pos: number;
}

type OpenHandle = OpenFile | OpenDir;

/** OpenSSH: "send up to 100 entries in one message". */
const NAMES_PER_READDIR = 100;
/** Largest READ we answer in one DATA reply (OpenSSH caps at 256 KiB as well). */
const MAX_READ = 256 * 1024;

class SftpRequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class SftpServerSession {
  private readonly handles = new Map<number, OpenHandle>();
  private nextHandle = 1;
  private closed = false;

  constructor(
    private readonly sftp: SFTPWrapper,
    private readonly ctx: SessionContext,
  ) {}

  /** Register the request handlers; every fd is closed when the channel closes. */
  attach(): void {
    const s = this.sftp;
    s.on('REALPATH', (id, path) => this.serve(id, () => this.realpath(id, path)));
    s.on('STAT', (id, path) => this.serve(id, () => this.stat(id, path, 'stat')));
    s.on('LSTAT', (id, path) => this.serve(id, () => this.stat(id, path, 'lstat')));
    s.on('FSTAT', (id, handle) => this.serve(id, () => this.fstat(id, handle)));
    s.on('OPEN', (id, path, flags) => this.serve(id, () => this.open(id, path, flags)));
    s.on('READ', (id, handle, offset, len) => this.serve(id, () => this.read(id, handle, offset, len)));
    s.on('CLOSE', (id, handle) => this.serve(id, () => this.close(id, handle)));
    s.on('OPENDIR', (id, path) => this.serve(id, () => this.opendir(id, path)));
    s.on('READDIR', (id, handle) => this.serve(id, () => this.readdir(id, handle)));
    s.on('READLINK', (id, path) => this.serve(id, () => this.readlink(id, path)));
    // Read-only master: every request that would change something is refused.
    for (const ev of ['WRITE', 'FSETSTAT', 'SETSTAT', 'REMOVE', 'RMDIR', 'MKDIR', 'RENAME', 'SYMLINK'] as const) {
      s.on(ev, (id: number) => this.reply(() => s.status(id, STATUS.PERMISSION_DENIED, 'read-only master')));
    }
    s.on('EXTENDED', (id: number) => this.reply(() => s.status(id, STATUS.OP_UNSUPPORTED, statusText(STATUS.OP_UNSUPPORTED))));
    s.on('error', (err: Error) => this.ctx.log(`sftp channel error: ${err.message}`));
    s.on('close', () => void this.closeAll());
  }

  /** Close every open fd; idempotent. */
  async closeAll(): Promise<void> {
    this.closed = true;
    const files = [...this.handles.values()].filter((h): h is OpenFile => h.kind === 'file');
    this.handles.clear();
    await Promise.allSettled(files.map((f) => f.fd.close()));
  }

  /** Run one request; any thrown error becomes a status reply. */
  private serve(id: number, work: () => Promise<void>): void {
    work().catch((err: unknown) => {
      const status = err instanceof SftpRequestError ? err.status : statusOfErrno((err as { code?: string }).code);
      const ours = err instanceof SftpRequestError || err instanceof OutsideRootError;
      const message = ours ? err.message : statusText(status);
      this.reply(() => this.sftp.status(id, status, message));
    });
  }

  /** Replies after the channel closed would go nowhere; skip them. */
  private reply(send: () => void): void {
    if (!this.closed) send();
  }

  /** Apply onRequest; true when the hook took the request over. */
  private async intercepted(id: number, op: SftpOp, rel: string): Promise<boolean> {
    const verdict = await this.ctx.hooks.onRequest?.(op, rel);
    if (verdict === undefined) return false;
    if (verdict === 'cut') this.ctx.cut();
    else if (typeof verdict === 'number') this.reply(() => this.sftp.status(id, verdict, statusText(verdict)));
    return true; // 'stall' lands here too: no reply at all
  }

  private async realpath(id: number, path: string): Promise<void> {
    const lex = this.ctx.paths.lexical(path);
    if (await this.intercepted(id, 'realpath', this.ctx.paths.relative(lex))) return;
    const canonical = await this.ctx.paths.canonical(path);
    // OpenSSH answers REALPATH with the path as both filename and longname and empty attrs.
    this.reply(() => this.sftp.name(id, [{ filename: canonical, longname: canonical, attrs: {} as Attributes }]));
  }

  private async stat(id: number, path: string, op: 'stat' | 'lstat'): Promise<void> {
    const rel = this.ctx.paths.relative(this.ctx.paths.lexical(path));
    if (await this.intercepted(id, op, rel)) return;
    const st = op === 'stat' ? await fsp.stat(await this.ctx.paths.follow(path)) : await fsp.lstat(await this.ctx.paths.noFollow(path));
    this.sendAttrs(id, rel, st, op);
  }

  private async fstat(id: number, handle: Buffer): Promise<void> {
    const file = this.fileOf(handle);
    if (await this.intercepted(id, 'fstat', file.rel)) return;
    this.sendAttrs(id, file.rel, await file.fd.stat(), 'fstat');
  }

  private sendAttrs(id: number, rel: string, st: Stats, op: 'stat' | 'lstat' | 'fstat'): void {
    const attrs = attrsOf(st);
    const rewritten = this.ctx.hooks.rewriteAttrs?.(rel, attrs, op) ?? attrs;
    this.reply(() => this.sftp.attrs(id, rewritten));
  }

  private async open(id: number, path: string, flags: number): Promise<void> {
    if (flags & WRITE_OPEN_FLAGS) throw new SftpRequestError(STATUS.PERMISSION_DENIED, 'read-only master');
    const rel = this.ctx.paths.relative(this.ctx.paths.lexical(path));
    if (await this.intercepted(id, 'open', rel)) return;
    const fd = await fsp.open(await this.ctx.paths.follow(path), 'r');
    if (this.closed) return void (await fd.close());
    this.reply(() => this.sftp.handle(id, this.register({ kind: 'file', rel, fd })));
  }

  private async read(id: number, handle: Buffer, offset: number, len: number): Promise<void> {
    const file = this.fileOf(handle);
    if (await this.intercepted(id, 'read', file.rel)) return;
    const injected = await this.ctx.hooks.onRead?.(file.rel, offset, len);
    if (injected === 'stall') return;
    if (injected === 'cut') return this.ctx.cut();
    const data = injected ?? (await this.readChunk(file.fd, offset, Math.min(len, MAX_READ)));
    if (data.length === 0) this.reply(() => this.sftp.status(id, STATUS.EOF, statusText(STATUS.EOF)));
    else this.reply(() => this.sftp.data(id, data));
  }

  private async readChunk(fd: FileHandle, offset: number, len: number): Promise<Buffer> {
    const buf = Buffer.alloc(len);
    const { bytesRead } = await fd.read(buf, 0, len, offset);
    return buf.subarray(0, bytesRead);
  }

  private async close(id: number, handle: Buffer): Promise<void> {
    const entry = this.lookup(handle);
    if (await this.intercepted(id, 'close', entry.rel)) return;
    this.handles.delete(handle.readUInt32BE(0));
    if (entry.kind === 'file') await entry.fd.close();
    this.reply(() => this.sftp.status(id, STATUS.OK, statusText(STATUS.OK)));
  }

  private async opendir(id: number, path: string): Promise<void> {
    const rel = this.ctx.paths.relative(this.ctx.paths.lexical(path));
    if (await this.intercepted(id, 'opendir', rel)) return;
    const real = await this.ctx.paths.follow(path);
    // readdir(3) returns `.` and `..` too; OpenSSH passes them on, clients filter them.
    const names = ['.', '..', ...(await fsp.readdir(real))];
    this.reply(() => this.sftp.handle(id, this.register({ kind: 'dir', rel, real, names, pos: 0 })));
  }

  private async readdir(id: number, handle: Buffer): Promise<void> {
    const dir = this.lookup(handle);
    if (dir.kind !== 'dir') throw new SftpRequestError(STATUS.FAILURE, 'not a directory handle');
    if (await this.intercepted(id, 'readdir', dir.rel)) return;
    const entries = await this.nextBatch(dir);
    if (entries.length === 0) return this.reply(() => this.sftp.status(id, STATUS.EOF, statusText(STATUS.EOF)));
    const sent = this.ctx.hooks.rewriteListing?.(dir.rel, entries) ?? entries;
    this.reply(() => this.sftp.name(id, sent));
  }

  /** Up to 100 lstat'ed entries; names that vanished since OPENDIR are skipped, as OpenSSH does. */
  private async nextBatch(dir: OpenDir): Promise<FileEntry[]> {
    const out: FileEntry[] = [];
    while (out.length === 0 && dir.pos < dir.names.length) {
      const names = dir.names.slice(dir.pos, dir.pos + NAMES_PER_READDIR);
      dir.pos += names.length;
      const stats = await Promise.allSettled(names.map((n) => fsp.lstat(posix.join(dir.real, n))));
      stats.forEach((r, i) => {
        if (r.status === 'fulfilled') out.push(this.entryOf(names[i]!, r.value));
      });
    }
    return out;
  }

  private entryOf(name: string, st: Stats): FileEntry {
    return { filename: name, longname: longnameOf(name, st, this.ctx.ids), attrs: attrsOf(st) };
  }

  private async readlink(id: number, path: string): Promise<void> {
    const rel = this.ctx.paths.relative(this.ctx.paths.lexical(path));
    if (await this.intercepted(id, 'readlink', rel)) return;
    const target = await fsp.readlink(await this.ctx.paths.noFollow(path));
    this.reply(() => this.sftp.name(id, [{ filename: target, longname: target, attrs: {} as Attributes }]));
  }

  private register(entry: OpenHandle): Buffer {
    const num = this.nextHandle++;
    this.handles.set(num, entry);
    const buf = Buffer.alloc(4);
    buf.writeUInt32BE(num, 0);
    return buf;
  }

  private lookup(handle: Buffer): OpenHandle {
    const entry = handle.length === 4 ? this.handles.get(handle.readUInt32BE(0)) : undefined;
    if (!entry) throw new SftpRequestError(STATUS.FAILURE, 'invalid handle');
    return entry;
  }

  private fileOf(handle: Buffer): OpenFile {
    const entry = this.lookup(handle);
    if (entry.kind !== 'file') throw new SftpRequestError(STATUS.FAILURE, 'not a file handle');
    return entry;
  }
}
