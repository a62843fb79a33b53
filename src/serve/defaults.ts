/**
 * Where the embedded master listens unless told: loopback, any free port.
 * Import-free, so the command line shows them without loading ssh2.
 */
export const SERVE_DEFAULTS = {
  host: '127.0.0.1',
  /** 0: any free port (the one taken is printed). */
  port: 0,
} as const;
