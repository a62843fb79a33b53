/** Key pairs for the embedded master, the demo and the tests. */

import type { ParsedKey } from 'ssh2';
import ssh2 from 'ssh2';

const { utils } = ssh2;

export interface KeyPair {
  /** OpenSSH private key. */
  private: string;
  /** "ssh-ed25519 AAAA... comment" */
  public: string;
}

/**
 * ssh2 1.17 drops a leading zero byte of the public key about once in 256
 * keys, giving a key its own parser rejects: draw again until it parses.
 */
export function generateEd25519(comment = ''): KeyPair {
  for (let attempt = 0; attempt < 16; attempt++) {
    const pair = utils.generateKeyPairSync('ed25519', { comment });
    if (!(utils.parseKey(pair.private) instanceof Error) && !(utils.parseKey(pair.public) instanceof Error)) {
      return { private: pair.private, public: pair.public };
    }
  }
  throw new Error('could not generate a usable ed25519 key pair');
}

/** The public half of a private key file's contents, as "type base64" (no comment). */
export function publicKeyOf(privateKey: string | Buffer, what: string): { type: string; blob: Buffer } {
  const parsed: unknown = utils.parseKey(privateKey);
  const key = (Array.isArray(parsed) ? parsed[0] : parsed) as ParsedKey | Error | undefined;
  if (!key || key instanceof Error) {
    throw new Error(`${what}: not a private key ssh2 can read${key ? ` (${key.message})` : ''}; an unencrypted OpenSSH or PEM key is needed`);
  }
  return { type: key.type, blob: key.getPublicSSH() };
}
