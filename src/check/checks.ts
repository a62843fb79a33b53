/**
 * The diagnostics behind `xroad-sync check`: is this slave set up to sync?
 * Checks the local files a pass needs (identity, known_hosts, target, log, state dir, flag file), each
 * problem printed with the command that fixes it, then connects to the master
 * the way a pass does and shows what a pass would change (dry run).
 */
import { constants, type Stats } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { journalPath, pendingJournal } from '../commit/journal.js';
import { ConnectionError, describeError, ExitCode, exitCodeOf, SafetyValveError, SyncError } from '../errors.js';
import { compileFilter } from '../filter/rsync-filter.js';
import { DEFAULT_EXCLUDES } from '../filter/types.js';
import { passContext } from '../pass/context.js';
import { planPass } from '../pass/plan-pass.js';
import type { PassReporter } from '../pass/types.js';
import { countChanges } from '../plan/plan.js';
import { fingerprint, hostLookupName, loadKnownHosts, verifyHostKey } from '../remote/known-hosts.js';
import { openSession, type SftpSession } from '../remote/session.js';
import { SftpSource } from '../remote/sftp-source.js';
import { itemizePlan } from '../report/itemize.js';
import type { SettingOrigins } from '../settings/layers.js';
import type { PassSettings } from '../settings/pass-settings.js';
import { holderIsLive, parseHolder, passLockPath } from '../state/lock.js';
import type { Tree } from '../tree.js';
import { escapeControls } from '../util/output.js';

export interface Outcome {
  readonly ok: boolean;
  readonly text: string;
  readonly fix?: string;
}

const ok = (text: string): Outcome => ({ ok: true, text });
const fail = (text: string, fix?: string): Outcome => ({ ok: false, text, fix });

/** Where the diagnostics go as they are made: each outcome, and the dry run's itemized lines. */
export interface CheckOutput {
  outcome(o: Outcome): void;
  /** The dry run: lines escaped as in slave-sync.log. */
  report(text: string): void;
}

const statOrNull = (path: string): Promise<Stats | null> => stat(path).catch(() => null);
const writable = (path: string): Promise<boolean> =>
  access(path, constants.W_OK).then(
    () => true,
    () => false,
  );
const mode = (st: Stats): string => '0' + (st.mode & 0o7777).toString(8).padStart(3, '0');
const me = (): string => process.env.USER ?? `uid ${process.getuid?.()}`;

/** Runs every check, each outcome to `out` as it is known; the exit code (usage when a local check failed). */
export async function runChecks(settings: PassSettings, out: CheckOutput): Promise<number> {
  const print = (o: Outcome): void => out.outcome(o);
  const identity = await checkIdentity(settings.connection.identityFile);
  const knownHosts = await checkKnownHosts(settings);
  const target = await checkTarget(settings.targetDir);
  const local = [
    identity,
    knownHosts,
    target,
    await checkLogFile(settings.logFile),
    await checkStateDir(settings.stateDir),
    await checkFlag(settings.flagFile),
  ];
  local.forEach(print);
  (await stateNotes(settings)).forEach(print);
  const localFailed = local.some((o) => !o.ok);
  if (!identity.ok || !knownHosts.ok) {
    print(
      fail(
        `connect to ${settings.connection.user}@${settings.connection.host}:${settings.connection.port}: not tried`,
        'fix the identity and known_hosts problems above first',
      ),
    );
    return ExitCode.USAGE;
  }
  const remote = await checkMaster(settings, target.ok, out);
  return localFailed ? ExitCode.USAGE : remote;
}

/** Each setting with where it came from: a flag, the environment, the settings file, or the default; the lines to print. */
export function originLines(s: PassSettings, origins: SettingOrigins): string[] {
  const c = s.connection;
  const rows: Array<[string, string, string]> = [
    ['master', '--master', c.host],
    ['user', '--user', c.user],
    ['port', '--port', String(c.port)],
    ['identity', '--identity', c.identityFile],
    ['knownHosts', '--known-hosts', c.knownHostsFile],
    ['source', '--source', s.sourceDir],
    ['target', '--target', s.targetDir],
    ['stateDir', '--state-dir', s.stateDir],
    ['flagFile', '--flag-file', s.flagFile],
    ['logFile', '--log-file', s.logFile ?? '(none)'],
    ['connectTimeout', '--connect-timeout', `${c.connectTimeoutMs / 1000} s`],
    ['timeout', '--timeout', `${c.idleTimeoutMs / 1000} s`],
  ];
  const lines = ['settings (highest first: flag, environment, settings file, default):'];
  for (const [key, flag, value] of rows) lines.push(`     ${flag.padEnd(18)} ${value}  (${origins.get(key) ?? 'default'})`);
  for (const [pattern, from] of excludeOrigins(s, origins)) lines.push(`     ${'--exclude'.padEnd(18)} ${pattern}  (${from.join(', ')})`);
  if (!defaultExcludesOn(origins)) {
    lines.push(`     ${'--no-default-excludes'.padEnd(18)} the default excludes are off  (${origins.get('defaultExcludes')})`);
  }
  return lines;
}

/** Every effective exclude with every place it came from: flags, environment and settings file add up, beside the defaults. */
function excludeOrigins(s: PassSettings, origins: SettingOrigins): Map<string, string[]> {
  const given = new Map((origins.items.get('exclude') ?? []).map((item) => [item.value, [...item.from]]));
  const byDefault = (pattern: string): string[] => (defaultExcludesOn(origins) && DEFAULT_EXCLUDES.includes(pattern) ? ['default'] : []);
  return new Map(s.excludes.map((pattern) => [pattern, [...byDefault(pattern), ...(given.get(pattern) ?? [])]]));
}

/** --no-default-excludes only ever turns them off: set anywhere, they are off. */
const defaultExcludesOn = (origins: SettingOrigins): boolean => (origins.get('defaultExcludes') ?? 'default') === 'default';

async function checkIdentity(file: string): Promise<Outcome> {
  const st = await statOrNull(file);
  if (!st)
    return fail(
      `identity ${file} does not exist`,
      `ssh-keygen -t ed25519 -N '' -f ${file}, then add ${file}.pub to the sync user's ~/.ssh/authorized_keys on the master`,
    );
  if (!st.isFile()) return fail(`identity ${file} is not a regular file`, 'pass --identity with the private key file');
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid)
    return fail(`identity ${file} is owned by uid ${st.uid}, not by the running user (uid ${uid})`, `chown ${me()} ${file}`);
  if ((st.mode & 0o077) !== 0) return fail(`identity ${file} has mode ${mode(st)}`, `run chmod 600 ${file}`);
  if (
    !(await access(file, constants.R_OK).then(
      () => true,
      () => false,
    ))
  )
    return fail(`identity ${file} is not readable`, `run chmod 600 ${file}`);
  return ok(`identity ${file} (mode ${mode(st)}, owned by the running user)`);
}

async function checkKnownHosts(settings: PassSettings): Promise<Outcome> {
  const { host, port, knownHostsFile: file } = settings.connection;
  const name = hostLookupName(host, port);
  const keyscan = `ssh-keyscan -p ${port} ${host} >> ${file}, then compare ssh-keygen -lf ${file} with ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the master`;
  let known: ReturnType<typeof loadKnownHosts>;
  try {
    known = loadKnownHosts(file);
  } catch (err) {
    return fail(err instanceof SyncError ? err.message : describeError(err), keyscan);
  }
  // A key counts when ssh(1) would accept it for this host: plain, [host]:port or hashed lines alike.
  const keys = known.entries.filter((e) => e.marker === 'none' && verifyHostKey(known, host, port, e.key).ok);
  if (keys.length === 0) return fail(`known_hosts ${file} has no key for ${name}`, keyscan);
  return ok(`known_hosts ${file} holds ${name}: ${keys.map((e) => `${e.keyType} ${fingerprint(e.key)}`).join(', ')}`);
}

async function checkTarget(dir: string): Promise<Outcome> {
  const st = await statOrNull(dir);
  if (!st) return fail(`target ${dir} does not exist`, `mkdir -p ${dir} (on a security server: install the X-Road packages first)`);
  if (!st.isDirectory()) return fail(`target ${dir} is not a directory`, 'pass --target with the directory to mirror into');
  if (!(await writable(dir)))
    return fail(`target ${dir} is not writable by ${me()}`, `run the sync as the owner of ${dir} (uid ${st.uid}), or chown -R ${me()} ${dir}`);
  return ok(`target ${dir} exists and is writable`);
}

async function checkLogFile(file: string | null): Promise<Outcome> {
  if (file === null) return ok('log file: disabled (--no-log-file)');
  const dir = dirname(file);
  if (!(await statOrNull(dir))) return fail(`log file directory ${dir} does not exist`, `mkdir -p ${dir}`);
  if (!(await writable(dir))) return fail(`log file directory ${dir} is not writable by ${me()}`, `chown ${me()} ${dir}, or pass --log-file`);
  if ((await statOrNull(file)) && !(await writable(file))) return fail(`log file ${file} is not writable by ${me()}`, `chown ${me()} ${file}`);
  return ok(`log file ${file} can be written`);
}

async function checkStateDir(dir: string): Promise<Outcome> {
  if (await statOrNull(dir)) {
    return (await writable(dir)) ? ok(`state dir ${dir} is writable`) : fail(`state dir ${dir} is not writable by ${me()}`, `chown ${me()} ${dir}`);
  }
  let parent = dirname(dir);
  while (!(await statOrNull(parent)) && parent !== dirname(parent)) parent = dirname(parent);
  if (await writable(parent)) return ok(`state dir ${dir} does not exist yet; the first pass creates it`);
  return fail(`state dir ${dir} does not exist and ${parent} is not writable by ${me()}`, `mkdir -p ${dir} && chown ${me()} ${dir}`);
}

/** Left by a killed pass: a journal the next pass completes, a lock the next pass takes over. Notes, not failures. */
async function stateNotes(settings: PassSettings): Promise<Outcome[]> {
  const notes: Outcome[] = [];
  const pending = await pendingJournal(settings.stateDir, settings.targetDir);
  if (pending) {
    notes.push(
      ok(
        `the interrupted commit of ${pending.createdAt} is pending in ${journalPath(settings.stateDir)} (${pending.operations} operations): the next pass completes it`,
      ),
    );
  }
  const lockFile = passLockPath(settings.stateDir);
  const text = await readFile(lockFile, 'utf8').catch(() => null);
  const holder = text === null ? undefined : parseHolder(text);
  if (holder !== undefined && !holderIsLive(holder)) notes.push(ok(`stale lock ${lockFile} (pid ${holder.pid} is gone): the next pass takes it over`));
  else if (holder !== undefined) notes.push(ok(`lock ${lockFile} is held by pid ${holder.pid} (${holder.purpose}): a pass is running`));
  return notes;
}

async function checkFlag(file: string): Promise<Outcome> {
  const dir = dirname(file);
  const st = await statOrNull(dir);
  if (!st?.isDirectory())
    return fail(`flag file directory ${dir} does not exist`, `mkdir -p ${dir} (xroad-base creates /var/tmp/xroad; xroad-sync pause also creates it)`);
  const flag = await statOrNull(file);
  if (flag) return ok(`flag file ${file} exists: sync is PAUSED since ${flag.mtime.toISOString()} (xroad-sync resume to end it)`);
  return ok(`flag file ${file} absent: sync is not paused`);
}

/** What planning notices (stray temps, names that are not UTF-8) printed as notes; check reports nothing else through it. */
function notesReporter(out: CheckOutput): PassReporter {
  const none = (): void => undefined;
  return { receivingFileList: none, items: none, notice: (m) => out.outcome(ok(`note: ${m}`)), skipped: none, success: none, failure: none };
}

function describeTree(tree: Tree): string {
  let files = 0,
    dirs = 0,
    links = 0,
    bytes = 0;
  for (const e of tree.values()) {
    if (e.path === '') continue;
    if (e.type === 'file') files++, (bytes += e.size);
    else if (e.type === 'dir') dirs++;
    else if (e.type === 'symlink') links++;
  }
  return `${files} files, ${dirs} directories, ${links} symlinks, ${bytes} bytes`;
}

async function checkMaster(settings: PassSettings, scanTargetToo: boolean, out: CheckOutput): Promise<number> {
  const print = (o: Outcome): void => out.outcome(o);
  const c = settings.connection;
  const where = `${c.user}@${c.host}:${c.port}`;
  let session: SftpSession | undefined;
  try {
    session = await openSession(c);
    print(ok(`connected to ${where}; host key verified against ${c.knownHostsFile}`));
    const source = new SftpSource(session, settings.sourceDir);
    if (!scanTargetToo) {
      // The target's own FAIL above says what to do; no plan without it.
      print(ok(`master ${settings.sourceDir.replace(/\/?$/, '/')} (after excludes): ${describeTree(await source.scan(compileFilter(settings.excludes)))}`));
      return ExitCode.OK;
    }
    let planned: Awaited<ReturnType<typeof planPass>>;
    try {
      // The pass's own planning, limits and safety valve included: check cannot pass what a pass refuses.
      planned = await planPass(passContext(settings, source, notesReporter(out), {}, []), { preview: true });
    } catch (err) {
      if (!(err instanceof SafetyValveError)) throw err;
      print(fail(`a pass would refuse: ${err.message}`, err.hint));
      return exitCodeOf(err);
    }
    const { plan, sourceTree, targetTree } = planned;
    print(ok(`master ${settings.sourceDir.replace(/\/?$/, '/')} (after excludes): ${describeTree(sourceTree)}`));
    const { changed, deleted } = countChanges(plan.changes);
    print(
      ok(
        `target ${settings.targetDir}: ${describeTree(targetTree)}; a pass would change ${changed} and delete ${deleted} (${plan.changes.length} changes pending)`,
      ),
    );
    const lines = itemizePlan(plan.changes);
    out.report(
      lines.length > 0
        ? `dry run (what the next pass would do):\n${lines.map((l) => escapeControls(l) + '\n').join('')}`
        : 'dry run: the target already mirrors the master\n',
    );
    return ExitCode.OK;
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error && !err.message.includes(err.cause.message) ? `: ${err.cause.message}` : '';
    const message = err instanceof SyncError ? err.message + cause : describeError(err);
    const reach = `check that sshd runs on ${c.host}:${c.port} and is reachable from here: ssh -p ${c.port} -i ${c.identityFile} ${c.user}@${c.host}`;
    print(
      fail(
        `connect and list ${where}:${settings.sourceDir}: ${message}`,
        (err instanceof SyncError ? err.hint : undefined) ?? (err instanceof ConnectionError ? reach : undefined),
      ),
    );
    return exitCodeOf(err);
  } finally {
    await session?.close();
  }
}
