/**
 * Writing many small staged files on a second thread.
 *
 * Creating a file on a journaled ext4 costs the kernel ~30 µs, and its write,
 * owner, mode, mtime and close ~15 µs more: a third of a 5,000-file initial
 * sync, spent on the one JavaScript thread that also decrypts and parses
 * the SFTP replies. Handed to a worker thread, the kernel's part runs beside
 * the protocol's on the second core (a one-shot pass on the bench's large
 * tree: staging ~0.7 s → see docs/performance.md). Used only for passes
 * whose staged files are flushed once at the end (stage/flush.ts): there the
 * worker's system calls are the same as on the main thread, in the same
 * order per file, and no fsync is needed per file.
 *
 * The worker runs a self-contained script (no module of ours: the single
 * executable has no files to load), receives the jobs of one tick in one
 * message and answers them in one.
 */
import { Worker } from 'node:worker_threads';
import { CONTENT_HASH } from '../local/content-hashes.js';

export interface TempFileJob {
  /** Absolute path of the temp file, created exclusively (it must not exist). */
  readonly temp: string;
  /** Its bytes, in a Buffer of their own: handed over to the thread, not copied, and unusable here after. */
  readonly data: Buffer;
  readonly uid?: number;
  readonly gid?: number;
  readonly mode: number;
  /** Seconds since the epoch. */
  readonly mtime: number;
}

/** Which step failed: creating the temp, writing its bytes, or giving it its owner, mode and mtime. */
export type TempWriteStep = 'create' | 'write' | 'attrs';

export class TempWriteError extends Error {
  constructor(
    readonly step: TempWriteStep,
    /** The temp file it was writing. */
    readonly temp: string,
    override readonly cause: Error,
  ) {
    super(cause.message, { cause });
  }
}

export interface TempWriter {
  /**
   * Queues a file for the thread and resolves once the queue has room for another: the fetch of the
   * next file need not wait for this one's system calls, and the bytes waiting stay bounded.
   * `onWritten` runs when the file is complete on the thread, with the content hash of its bytes
   * (local/content-hashes.ts, computed there too); a failure is kept for `settled`.
   */
  enqueue(job: TempFileJob, onWritten: (contentHash: string) => void): Promise<void>;
  /** The first write that failed, if any: no further file need be fetched. */
  failure(): TempWriteError | Error | undefined;
  /** Every queued write answered; throws the first failure. */
  settled(): Promise<void>;
  /** Ends the thread (after `settled`, or to abandon the queue). */
  close(): Promise<void>;
}

/** Bytes and files queued for the thread at most before the fetches wait for it. */
const MAX_QUEUED_BYTES = 16 * 1024 * 1024;
const MAX_QUEUED_FILES = 512;

interface Reply {
  readonly id: number;
  readonly hash?: string;
  readonly error?: { step: TempWriteStep; message: string; code?: string; errno?: number; syscall?: string; path?: string };
}

/**
 * The worker's script. Same calls and order as stage.ts's stageFile for a
 * file flushed later: create 0600, write, chown before chmod (chown clears
 * set-id bits), chmod, mtime, close.
 */
const WORKER_SOURCE = `
const fs = require('node:fs');
const { createHash } = require('node:crypto');
const { parentPort } = require('node:worker_threads');
function run(job) {
  let step = 'create';
  let fd = -1;
  try {
    fd = fs.openSync(job.temp, 'wx', 0o600);
    step = 'write';
    const data = Buffer.from(job.data.buffer, job.data.byteOffset, job.data.byteLength);
    for (let done = 0; done < data.length; ) done += fs.writeSync(fd, data, done, data.length - done, done);
    step = 'attrs';
    if (job.uid !== undefined || job.gid !== undefined) fs.fchownSync(fd, job.uid ?? -1, job.gid ?? -1);
    fs.fchmodSync(fd, job.mode);
    fs.futimesSync(fd, job.mtime, job.mtime);
    return { id: job.id, hash: createHash('${CONTENT_HASH.algorithm}').update(data).digest('${CONTENT_HASH.encoding}') };
  } catch (err) {
    return { id: job.id, error: { step, message: String(err && err.message), code: err && err.code, errno: err && err.errno, syscall: err && err.syscall, path: err && err.path } };
  } finally {
    if (fd !== -1) try { fs.closeSync(fd); } catch {}
  }
}
parentPort.on('message', (jobs) => parentPort.postMessage(jobs.map(run)));
`;

export function startTempWriter(): TempWriter {
  const worker = new Worker(WORKER_SOURCE, { eval: true, name: 'xroad-sync staging' });
  const queued = new Map<number, { bytes: number; temp: string; onWritten: (contentHash: string) => void }>();
  let queuedBytes = 0;
  let nextId = 0;
  let batch: Array<TempFileJob & { id: number }> = [];
  let handedOver: ArrayBuffer[] = [];
  let firstFailure: TempWriteError | Error | undefined;
  /** Waiters for room in the queue, or for it to empty. */
  let waiters: Array<() => void> = [];
  const wake = (): void => {
    const woken = waiters;
    waiters = [];
    for (const w of woken) w();
  };
  const answered = (id: number): void => {
    const job = queued.get(id);
    if (!job) return;
    queued.delete(id);
    queuedBytes -= job.bytes;
  };
  const failAll = (err: Error): void => {
    firstFailure ??= err;
    queued.clear();
    queuedBytes = 0;
    wake();
  };
  worker.on('message', (replies: Reply[]) => {
    for (const reply of replies) {
      const job = queued.get(reply.id);
      answered(reply.id);
      if (!reply.error) job?.onWritten(reply.hash ?? '');
      else {
        const { step, message, ...errno } = reply.error;
        firstFailure ??= new TempWriteError(step, job?.temp ?? '', Object.assign(new Error(message), errno));
      }
    }
    if (queued.size === 0) worker.unref();
    wake();
  });
  worker.on('error', (err) => failAll(new Error(`the staging thread failed: ${err.message}`)));
  worker.on('exit', (code) => failAll(new Error(`the staging thread exited (code ${code})`)));
  worker.unref();
  const send = (): void => {
    const [jobs, buffers] = [batch, handedOver];
    [batch, handedOver] = [[], []];
    worker.postMessage(jobs, buffers);
  };
  const until = async (done: () => boolean): Promise<void> => {
    while (!done()) await new Promise<void>((resolve) => waiters.push(resolve));
  };
  const roomLeft = (): boolean => firstFailure !== undefined || (queuedBytes < MAX_QUEUED_BYTES && queued.size < MAX_QUEUED_FILES);
  return {
    async enqueue(job, onWritten) {
      if (firstFailure) throw firstFailure;
      const id = nextId++;
      queued.set(id, { bytes: job.data.length, temp: job.temp, onWritten });
      queuedBytes += job.data.length;
      worker.ref(); // a queued file keeps the process alive, as a pending fs call would
      if (batch.length === 0) process.nextTick(send);
      batch.push({ ...job, id });
      // Transferred, not copied: only a Buffer that owns its whole ArrayBuffer (a pooled one shares it).
      if (job.data.byteOffset === 0 && job.data.byteLength === job.data.buffer.byteLength) handedOver.push(job.data.buffer as ArrayBuffer);
      await until(roomLeft);
    },
    failure: () => firstFailure,
    async settled() {
      await until(() => queued.size === 0);
      if (firstFailure) throw firstFailure;
    },
    async close() {
      firstFailure ??= new Error('the staging thread was closed');
      await worker.terminate();
    },
  };
}
