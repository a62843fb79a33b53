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

/** IG-XLB's seven plus /gpghome (added to the guide later: its 0700 mode made every sync fail). */
export const DEFAULT_EXCLUDES: readonly string[] = [
  'db.properties',
  '/conf.d/node.ini',
  '*.tmp',
  '/postgresql',
  '/nginx',
  '/globalconf',
  '/jetty',
  '/gpghome',
];
