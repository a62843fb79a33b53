/**
 * pause / resume: the guide's flag file, made a command. Pausing creates
 * /var/tmp/xroad/sync-disabled (and its directory, handed to the xroad user
 * when run as root, as xroad-base's postinst sets it up); resuming removes it
 * and, with --now, runs the pass the upgrade procedure asks for.
 */
import { existsSync } from 'node:fs';
import { chown, mkdir, unlink, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { describeError, ExitCode } from '../errors.js';
import { loadIdMapping } from '../local/ids.js';

export async function pauseCommand(opts: { flagFile: string }): Promise<number> {
  const flag = resolve(opts.flagFile);
  const was = existsSync(flag);
  try {
    if (!was) {
      await mkdir(dirname(flag), { recursive: true, mode: 0o1750 });
      await handToXroad(dirname(flag));
      await writeFile(flag, `paused by ${process.env.SUDO_USER ?? process.env.USER ?? 'unknown'} at ${new Date().toISOString()}\n`, { flag: 'wx' }).catch(
        (err: NodeJS.ErrnoException) => {
          if (err.code !== 'EEXIST') throw err;
        },
      );
      await handToXroad(flag);
    }
  } catch (err) {
    process.stderr.write(`xroad-sync: cannot create the flag file ${flag}: ${describeError(err)}\n`);
    return ExitCode.LOCAL_IO;
  }
  process.stdout.write(`Sync paused: ${was} => true (${flag})\n`);
  return ExitCode.OK;
}

export async function resumeCommand(opts: { flagFile: string; now?: boolean } & Record<string, unknown>): Promise<number> {
  const flag = resolve(opts.flagFile);
  const was = existsSync(flag);
  try {
    await unlink(flag);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      process.stderr.write(`xroad-sync: cannot remove the flag file ${flag}: ${describeError(err)}\n`);
      return ExitCode.LOCAL_IO;
    }
  }
  process.stdout.write(`Sync paused: ${was} => false (${flag})\n`);
  if (!opts.now) return ExitCode.OK;
  const { syncCommand } = await import('./sync-command.js');
  return syncCommand(opts);
}

/** When root creates the flag or its directory, give them to xroad so the service user can manage them too. */
async function handToXroad(path: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const { uidByName, gidByName } = await loadIdMapping();
  const uid = uidByName.get('xroad');
  if (uid === undefined) return;
  await chown(path, uid, gidByName.get('xroad') ?? -1).catch(() => undefined);
}
