/**
 * What the embedded master says about a file: SFTP v3 attributes, OpenSSH's
 * `ls -l` longname, and errno → SFTP status. Kept byte-compatible with
 * OpenSSH's sftp-server (sftp-common.c `ls_file`, sftp-server.c
 * `errno_to_portable`) so code that parses a real master's replies parses
 * ours the same way.
 */
import type { Stats } from 'node:fs';
import type { Attributes } from 'ssh2';
import type { IdNames } from '../local/ids.js';

/** SFTP v3 status codes (draft-ietf-secsh-filexfer-02 §7). */
export const STATUS = {
  OK: 0,
  EOF: 1,
  NO_SUCH_FILE: 2,
  PERMISSION_DENIED: 3,
  FAILURE: 4,
  BAD_MESSAGE: 5,
  NO_CONNECTION: 6,
  CONNECTION_LOST: 7,
  OP_UNSUPPORTED: 8,
} as const;

/** OpenSSH's status_to_message() texts, index = status code. */
const STATUS_TEXT = [
  'Success',
  'End of file',
  'No such file',
  'Permission denied',
  'Failure',
  'Bad message',
  'No connection',
  'Connection lost',
  'Operation unsupported',
];

export function statusText(code: number): string {
  return STATUS_TEXT[code] ?? 'Unknown error';
}

/** SSH2_FXF_* open flags that ask for anything but reading. */
export const WRITE_OPEN_FLAGS = 0x02 /* WRITE */ | 0x04 /* APPEND */ | 0x08 /* CREAT */ | 0x10 /* TRUNC */ | 0x20; /* EXCL */

/** errno → SFTP status, as OpenSSH's errno_to_portable() maps it. */
export function statusOfErrno(code: string | undefined): number {
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'EBADF':
    case 'ELOOP':
      return STATUS.NO_SUCH_FILE;
    case 'EPERM':
    case 'EACCES':
    case 'EFAULT':
      return STATUS.PERMISSION_DENIED;
    case 'ENAMETOOLONG':
    case 'EINVAL':
      return STATUS.BAD_MESSAGE;
    case 'ENOSYS':
      return STATUS.OP_UNSUPPORTED;
    default:
      return STATUS.FAILURE;
  }
}

/** Whole-second attributes, as OpenSSH's stat_to_attrib() fills them. */
export function attrsOf(st: Stats): Attributes {
  return {
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    atime: Math.floor(st.atimeMs / 1000),
    mtime: Math.floor(st.mtimeMs / 1000),
  };
}

const S_IFMT = 0o170000;
const TYPE_CHARS: Record<number, string> = {
  0o040000: 'd',
  0o020000: 'c',
  0o060000: 'b',
  0o100000: '-',
  0o120000: 'l',
  0o140000: 's',
  0o010000: 'p',
};

/** BSD strmode(): 10 characters plus the trailing space OpenSSH keeps in its longnames. */
function strmode(mode: number): string {
  const bit = (mask: number, ch: string): string => (mode & mask ? ch : '-');
  const exec = (xMask: number, special: number, on: string, off: string): string => {
    if (mode & special) return mode & xMask ? on : off;
    return mode & xMask ? 'x' : '-';
  };
  return (
    (TYPE_CHARS[mode & S_IFMT] ?? '?') +
    bit(0o400, 'r') +
    bit(0o200, 'w') +
    exec(0o100, 0o4000, 's', 'S') +
    bit(0o040, 'r') +
    bit(0o020, 'w') +
    exec(0o010, 0o2000, 's', 'S') +
    bit(0o004, 'r') +
    bit(0o002, 'w') +
    exec(0o001, 0o1000, 't', 'T') +
    ' '
  );
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const HALF_YEAR_S = (365 * 24 * 60 * 60) / 2;

/** strftime "%b %e %H:%M" for the last six months, "%b %e  %Y" otherwise, in local time like the C library. */
function lsTime(mtime: number, nowSeconds = Math.floor(Date.now() / 1000)): string {
  const d = new Date(mtime * 1000);
  const day = String(d.getDate()).padStart(2, ' ');
  const head = `${MONTHS[d.getMonth()]} ${day}`;
  if (nowSeconds - HALF_YEAR_S < mtime && nowSeconds >= mtime) {
    const hh = String(d.getHours()).padStart(2, '0');
    const mm = String(d.getMinutes()).padStart(2, '0');
    return `${head} ${hh}:${mm}`;
  }
  return `${head}  ${d.getFullYear()}`;
}

/** OpenSSH's char buf[1024]: longer longnames are cut by snprintf. */
const LONGNAME_MAX_BYTES = 1023;

/** `ls_file(name, st, remote=0, si_units=0)`: "-rw-r-----    1 root     root         1234 Nov 28 15:58 name". */
export function longnameOf(name: string, st: Stats, ids: IdNames): string {
  // No name known: the number, as OpenSSH prints it.
  const user = (ids.userById.get(st.uid) ?? String(st.uid)).padEnd(8, ' ');
  const group = (ids.groupById.get(st.gid) ?? String(st.gid)).padEnd(8, ' ');
  const nlink = String(st.nlink).padStart(3, ' ');
  const size = String(st.size).padStart(8, ' ');
  const line = `${strmode(st.mode)} ${nlink} ${user} ${group} ${size} ${lsTime(Math.floor(st.mtimeMs / 1000))} ${name}`;
  const bytes = Buffer.from(line, 'utf8');
  return bytes.length <= LONGNAME_MAX_BYTES ? line : bytes.subarray(0, LONGNAME_MAX_BYTES).toString('utf8');
}
