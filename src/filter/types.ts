/** The exclude filter as the scanners and the planner see it. */
export interface Filter {
  /** The patterns, in the order given (first match wins, as in rsync). */
  readonly patterns: readonly string[];
  /**
   * Whether rsync would exclude `path` itself (relative to the transfer root,
   * no leading or trailing slash) given whether it is a directory. It does not
   * look at ancestors: scanners do not descend into an excluded directory.
   */
  isExcluded(path: string, isDir: boolean): boolean;
  /** Like isExcluded, but also true when any ancestor directory is excluded. */
  isExcludedPath(path: string, isDir: boolean): boolean;
}

/**
 * IG-XLB 1.29's six (1.3's seven less /nginx and /jetty, plus /gpghome: its 0700 mode made every
 * sync fail) and 1.3's /nginx and /jetty, kept: X-Road 7 has neither (excluding an absent path
 * changes nothing), a node upgraded from 6.x keeps its own leftovers, and X-Road's Ansible role still excludes both.
 */
export const DEFAULT_EXCLUDES: readonly string[] = ['db.properties', '/conf.d/node.ini', '*.tmp', '/postgresql', '/nginx', '/globalconf', '/jetty', '/gpghome'];
