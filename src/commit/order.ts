/**
 * Paths renamed after all others: they reference files that must already be
 * in place. The signer on a slave reloads signer/keyconf.xml live, and it
 * names the softtoken .p12 files.
 */
export const COMMIT_LAST: readonly string[] = ['signer/keyconf.xml'];
