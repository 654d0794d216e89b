// JSON values in Table entities, spread over properties: a string property holds 32K UTF-16
// characters (an entity 1 MiB).

/** Characters per `data` property: a string property holds 32K UTF-16 characters. */
const chunkChars = 30_000;

/** JSON spread over `data`, `data1`, `data2`, ... so no one property outgrows its limit. */
export function packData(value: unknown): Record<string, string> {
  const text = JSON.stringify(value);
  const out: Record<string, string> = { data: text.slice(0, chunkChars) };
  for (let i = 1; i * chunkChars < text.length; i++)
    out[`data${i}`] = text.slice(i * chunkChars, (i + 1) * chunkChars);
  return out;
}

export function unpackData<T>(e: Record<string, unknown>): T {
  let text = String(e.data);
  for (let i = 1; typeof e[`data${i}`] === 'string'; i++) text += e[`data${i}`] as string;
  return JSON.parse(text) as T;
}
