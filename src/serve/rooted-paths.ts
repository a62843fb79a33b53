/**
 * Confinement of client paths to the served root. Clients see real absolute
 * paths (so a test can use the same path against OpenSSH and against us);
 * relative paths and "." start at the root, which plays the home directory.
 * Anything that leaves the root, lexically (`..`) or through a symlink that a
 * following operation would traverse, is refused with EACCES.
 */
import { promises as fsp } from 'node:fs';
import { posix } from 'node:path';

export class OutsideRootError extends Error {
  readonly code = 'EACCES';
  constructor(readonly clientPath: string) {
    super(`path outside the served root: ${JSON.stringify(clientPath)}`);
  }
}

export class RootedPaths {
  private constructor(readonly root: string) {}

  /** `root` is canonicalised with realpath, so a symlinked root still confines what it points at. */
  static async create(root: string): Promise<RootedPaths> {
    const real = await fsp.realpath(posix.resolve(root));
    const st = await fsp.stat(real);
    if (!st.isDirectory()) throw new Error(`served root is not a directory: ${root}`);
    return new RootedPaths(real);
  }

  /** Normalised absolute path for what the client sent, or OutsideRootError. No filesystem access. */
  lexical(clientPath: string): string {
    if (clientPath.includes('\0')) throw new OutsideRootError(clientPath);
    const abs = clientPath.startsWith('/') ? posix.normalize(clientPath) : posix.resolve(this.root, clientPath || '.');
    const trimmed = abs.length > 1 && abs.endsWith('/') ? abs.slice(0, -1) : abs;
    if (!this.contains(trimmed)) throw new OutsideRootError(clientPath);
    return trimmed;
  }

  /** For operations that follow symlinks (stat, open, opendir, realpath): the real path, inside the root. */
  async follow(clientPath: string): Promise<string> {
    const real = await fsp.realpath(this.lexical(clientPath));
    if (!this.contains(real)) throw new OutsideRootError(clientPath);
    return real;
  }

  /**
   * For lstat/readlink: the parent is resolved (a symlinked directory on the
   * way must not lead out), the last component is left alone.
   */
  async noFollow(clientPath: string): Promise<string> {
    const lex = this.lexical(clientPath);
    if (lex === this.root) return lex;
    const parent = await fsp.realpath(posix.dirname(lex));
    if (!this.contains(parent)) throw new OutsideRootError(clientPath);
    return posix.join(parent, posix.basename(lex));
  }

  /** REALPATH semantics: canonical path; a missing last component is allowed (OpenSSH allows it too). */
  async canonical(clientPath: string): Promise<string> {
    try {
      return await this.follow(clientPath);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') throw err;
      const lex = this.lexical(clientPath);
      const parent = await this.follow(posix.dirname(lex));
      return posix.join(parent, posix.basename(lex));
    }
  }

  /** Path relative to the root, '' for the root itself: the form hooks receive. */
  relative(abs: string): string {
    return abs === this.root ? '' : abs.slice(this.root === '/' ? 1 : this.root.length + 1);
  }

  private contains(abs: string): boolean {
    if (this.root === '/') return abs.startsWith('/');
    return abs === this.root || abs.startsWith(this.root + '/');
  }
}
