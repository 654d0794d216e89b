// Azure Table keys may not hold / \ # ? or control characters, and hold at most 1 KiB. Every key
// built from an id (Graph's, a request's, a source key) goes through tableKey: those characters, `%`
// itself and a leading `~` (our own rows, such as `~run`, start with it) are percent-encoded, so a
// hostile id can neither break a key nor land on another row; fromTableKey reads it back. GUIDs, UPNs
// and our policy ids stay as they are, so keys stored before keep working.
// eslint-disable-next-line no-control-regex -- control characters are what Table keys forbid
const forbidden = /[%/\\#?\u0000-\u001f\u007f-\u009f]|^~/g;

/** 1 KiB of UTF-16. */
export const maxTableKeyChars = 512;

export function tableKey(value: string): string {
  const key = value.replace(
    forbidden,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`,
  );
  if (key.length > maxTableKeyChars)
    throw new Error(
      `Table key too long: ${key.length} characters (a key holds at most 1 KiB, ${maxTableKeyChars} UTF-16 characters): ${JSON.stringify(value.slice(0, 80))}…`,
    );
  return key;
}

/** The id a key was built from. */
export function fromTableKey(key: string): string {
  return key.replace(/%([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** The partition of one mailbox's state and lock under a policy (policy ids never hold `|`). */
export function mailboxPartition(policyId: string, mailboxId: string): string {
  return `${tableKey(policyId)}|${tableKey(mailboxId)}`;
}
