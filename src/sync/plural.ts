// Counts in output read as English: "1 mailbox", "2 mailboxes" (never "1 mailboxes").

const irregular: Record<string, string> = { mailbox: 'mailboxes', is: 'are', was: 'were', has: 'have' };

/** The word for `n` of it: `noun(1, 'mailbox')` is "mailbox", `noun(2, 'mailbox')` "mailboxes". */
export const noun = (n: number, one: string, many = irregular[one] ?? `${one}s`): string =>
  n === 1 ? one : many;

/** `n` and its word: `count(1, 'mailbox')` is "1 mailbox", `count(1200, 'contact')` "1,200 contacts". */
export const count = (n: number, one: string, many?: string): string =>
  `${n.toLocaleString('en-US')} ${noun(n, one, many)}`;
