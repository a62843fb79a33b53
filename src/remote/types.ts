import type { Filter } from '../filter/types.js';
import type { Entry, Tree } from '../tree.js';

/** Where fetched bytes go: the stage hands one of these per file. */
export interface FileSink {
  write(chunk: Buffer, position: number): Promise<void>;
}

/**
 * The master as a pass needs it, whatever carries it (OpenSSH over SFTP in
 * production, an in-process server in tests). Implementations enforce the
 * no-progress timeout themselves and fail with the typed errors of errors.ts.
 */
export interface SourceTree {
  /** lstat-semantics listing of the whole tree below the source root, minus excluded paths (not descended). */
  scan(filter: Filter): Promise<Tree>;
  /**
   * Stream one regular file into `sink`. Fails with ProtocolError when the
   * master serves more or fewer bytes than `expected.size` (the file changed
   * between listing and read), with TransferError when it cannot be read.
   * Returns the number of bytes written.
   */
  fetch(expected: Entry, sink: FileSink): Promise<number>;
  /** Bytes over the wire so far, for the log's final line. */
  traffic(): { sent: number; received: number };
}
