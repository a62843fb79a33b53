/**
 * The previous pass's reading of each master directory, keyed by a digest of
 * the listing the master sent (every name, long name and attribute, `.` and
 * `..` included). A daemon polling a big unchanged tree gets the same bytes
 * every pass: a directory whose digest matches is not turned into entries,
 * filtered and checked again; the entries it gave last time are used as they
 * are (the same inputs give the same entries). What is kept is what the tree
 * holds anyway, plus a 20-byte digest per directory; directories the master
 * no longer lists are dropped at the end of each scan.
 */
import { createHash } from 'node:crypto';
import type { FileEntry } from 'ssh2';
import type { Filter } from '../filter/types.js';
import type { Entry } from '../tree.js';

export interface DirReading {
  readonly digest: Buffer;
  /** The directory's entries that passed the filter and checks, in listing order (symlinks without their target). */
  readonly entries: readonly Entry[];
  /** Paths skipped for their names (reported again every pass). */
  readonly skipped: readonly string[];
  /** Whether the master listed `.` (if not, the directory is checked for search permission every pass). */
  readonly listedDot: boolean;
}

export class ListingMemo {
  private readings = new Map<string, DirReading>();
  private filter: Filter | undefined;
  private seen = new Set<string>();

  /** A scan with `filter` starts: readings made with another filter are worthless. */
  begin(filter: Filter): void {
    if (filter !== this.filter) this.readings.clear();
    this.filter = filter;
    this.seen = new Set();
  }

  /** The scan ended whole: forget directories it did not list. A failed scan keeps everything (it may not have got far). */
  end(): void {
    for (const dir of [...this.readings.keys()]) if (!this.seen.has(dir)) this.readings.delete(dir);
  }

  static digestOf(names: readonly FileEntry[]): Buffer {
    const parts: string[] = [];
    for (const { filename, longname, attrs } of names) {
      parts.push(`${filename}\0${longname}\0${attrs.mode}\0${attrs.size}\0${attrs.mtime}\0${attrs.uid}\0${attrs.gid}`);
    }
    return createHash('sha1').update(parts.join('\n')).digest();
  }

  /** Last pass's reading of `dir` if the master listed exactly the same. */
  unchanged(dir: string, digest: Buffer): DirReading | undefined {
    this.seen.add(dir);
    const known = this.readings.get(dir);
    return known && known.digest.equals(digest) ? known : undefined;
  }

  remember(dir: string, reading: DirReading): void {
    this.seen.add(dir);
    this.readings.set(dir, reading);
  }
}
