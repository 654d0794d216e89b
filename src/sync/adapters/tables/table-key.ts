// Azure Table keys may not hold / \ # ? or control characters. Ids from Graph or a request are
// percent-encoded (and % itself), so a hostile id cannot break a key or land on another's; GUIDs,
// UPNs without those characters and our policy ids stay as they are, so stored keys keep working.
// eslint-disable-next-line no-control-regex -- control characters are what Table keys forbid
const forbidden = /[%/\\#?\u0000-\u001f\u007f-\u009f]/g;

export function tableKey(value: string): string {
  return value.replace(forbidden, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/** The partition of one mailbox's state and lock under a policy. */
export function mailboxPartition(policyId: string, mailboxId: string): string {
  return `${tableKey(policyId)}|${tableKey(mailboxId)}`;
}

/** The value a `tableKey` was made from. */
export const fromTableKey = (key: string): string =>
  key.replace(/%([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
