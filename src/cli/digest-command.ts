/** `xroad-sync digest [DIR]`: the digest of a local tree, to compare with a slave's `status` digest. */
import { resolve } from 'node:path';
import { digestOfDirectory } from '../report/digest.js';
import { printLine } from '../util/output.js';

export async function digestCommand(dir: string | undefined, opts: { exclude?: string[]; defaultExcludes?: boolean }): Promise<number> {
  const digest = await digestOfDirectory(resolve(dir ?? '/etc/xroad'), { excludes: opts.exclude, defaultExcludes: opts.defaultExcludes });
  printLine(digest);
  return 0;
}
