/**
 * The daemon's memory of the master's listing between passes, so that an
 * unchanged directory costs its READDIRs and a comparison, not the work of
 * turning 100,000 names into entries, filtering them and planning them
 * again every second.
 *
 * Per directory it keeps what the master answered (each name with its mode,
 * size, mtime, uid and gid, in the order served) and which paths that
 * listing put into the tree. A directory whose listing comes back the same,
 * name for name and number for number, contributes the same entries as
 * before; when every directory does, the scan returns the previous tree
 * itself, and the planner (which memoizes on its inputs) has nothing to redo.
 *
 * A symlink's numbers do not show its target (pointed elsewhere with a
 * target of the same length within the same second, or restored with its
 * times): remembered symlinks are read again every scan (one READLINK each).
 *
 * Nor do they show the owner and group NAMES behind a uid and gid (from
 * OpenSSH's longname, for the slave's own ids): the scan reads the names of
 * each uid and gid pair in each batch and compares them with the remembered
 * entries' (sftp-source.ts); a renamed user or group drops the memory and
 * the scan starts again without it. A different filter (settings reloaded)
 * starts from nothing too, and so does a memory older than `maxAgeMs` (an
 * hour: a safety net, not a need).
 */
import type { Filter } from '../filter/types.js';
import type { Tree } from '../tree.js';

/** Five numbers per name: mode, size, mtime, uid, gid. */
const FIELDS = 5;

export interface ListedName {
  readonly filename: string;
  readonly attrs: { readonly mode: number; readonly size: number; readonly mtime: number; readonly uid: number; readonly gid: number };
}

/** One directory as the master listed it, and what that listing put into the tree. */
export interface DirectoryListing {
  readonly names: readonly string[];
  readonly numbers: Float64Array;
  /** Tree paths this directory's entries took, in listing order (excluded names are not among them). */
  readonly paths: readonly string[];
  /** Paths the scan noted as skipped (names that are not UTF-8), said again when the listing is reused. */
  readonly skipped: readonly string[];
}

/**
 * A listing as its READDIR batches arrive, compared name by name with the
 * remembered one. While they agree nothing is kept (a 50,000-name listing
 * held whole until its last batch outlives V8's young generation, and
 * collecting it from the old one cost more than the listing itself); from
 * the first difference on, the names are kept.
 */
export class ListingMatch<Name extends ListedName = ListedName> {
  /** Names equal to the remembered ones, from the start. */
  private prefix = 0;
  private differs: boolean;
  /** The names from the first difference on (every name, without a remembered listing). */
  readonly tail: Name[] = [];

  constructor(readonly before: DirectoryListing | undefined) {
    this.differs = before === undefined;
  }

  add(batch: readonly Name[]): void {
    for (const item of batch) {
      if (!this.differs && this.prefix < this.before!.names.length && equalAt(this.before!, this.prefix, item)) this.prefix++;
      else {
        this.differs = true;
        this.tail.push(item);
      }
    }
  }

  /** The listing is the remembered one, name for name. */
  get same(): boolean {
    return !this.differs && this.prefix === this.before!.names.length;
  }

  /** The remembered names that this listing repeats before its first difference. */
  agreedNames(): readonly string[] {
    return this.before ? this.before.names.slice(0, this.prefix) : [];
  }

  /** What to remember of this listing: the agreed names, then the tail. */
  record(paths: readonly string[], skipped: readonly string[]): DirectoryListing {
    const count = this.prefix + this.tail.length;
    const names = [...this.agreedNames(), ...this.tail.map((n) => n.filename)];
    const numbers = new Float64Array(count * FIELDS);
    if (this.before) numbers.set(this.before.numbers.subarray(0, this.prefix * FIELDS));
    this.tail.forEach(({ attrs }, i) => {
      const at = (this.prefix + i) * FIELDS;
      numbers[at] = attrs.mode;
      numbers[at + 1] = attrs.size;
      numbers[at + 2] = attrs.mtime;
      numbers[at + 3] = attrs.uid;
      numbers[at + 4] = attrs.gid;
    });
    return { names, numbers, paths, skipped };
  }
}

function equalAt(before: DirectoryListing, i: number, { filename, attrs }: ListedName): boolean {
  const n = before.numbers;
  const at = i * FIELDS;
  return (
    before.names[i] === filename &&
    n[at] === attrs.mode &&
    n[at + 1] === attrs.size &&
    n[at + 2] === attrs.mtime &&
    n[at + 3] === attrs.uid &&
    n[at + 4] === attrs.gid
  );
}

/** What one scan may reuse, and where it records what it saw. */
export interface ListingRound {
  /** The last scan's listing of `dir`, with the tree it went into; undefined when there is none to reuse. */
  previous(dir: string): { readonly listing: DirectoryListing; readonly tree: Tree } | undefined;
  /** Call once the scan has its tree: the memory for the next scan. */
  finish(listings: ReadonlyMap<string, DirectoryListing>, tree: Tree): void;
}

export class KnownMaster {
  private listings = new Map<string, DirectoryListing>();
  private tree: Tree | undefined;
  private filter: Filter | undefined;
  private since = 0;

  constructor(
    private readonly maxAgeMs = 3_600_000,
    // Monotonic: a wall-clock step must not keep an old memory young.
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Start a scan with `filter`: the memory is offered only if it is young enough and was made with the same filter. */
  begin(filter: Filter): ListingRound {
    const started = this.now();
    const usable = this.tree !== undefined && this.filter === filter && started - this.since < this.maxAgeMs;
    const listings = usable ? this.listings : new Map<string, DirectoryListing>();
    const tree = this.tree;
    const fresh = !usable;
    return {
      previous: (dir) => {
        const listing = listings.get(dir);
        return listing && tree ? { listing, tree } : undefined;
      },
      finish: (next, scanned) => {
        this.listings = new Map(next);
        this.tree = scanned;
        this.filter = filter;
        if (fresh) this.since = started;
      },
    };
  }

  /** Drop the memory: the next scan builds every entry. */
  forget(): void {
    this.listings = new Map();
    this.tree = undefined;
  }
}
