// Starts servers side by side; if one fails, the others are closed before the error is thrown,
// so a failed setup never leaves a listening server that keeps the test process alive.
interface Closable {
  close(): Promise<void>;
}

export async function startAll<T extends readonly Closable[]>(
  ...starts: { [K in keyof T]: Promise<T[K]> }
): Promise<T> {
  const settled = await Promise.allSettled(starts);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await closeAll(settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : [])));
    throw failed.reason;
  }
  return settled.map((s) => (s as PromiseFulfilledResult<Closable>).value) as unknown as T;
}

/** Runs a fixture's remaining set-up; if it throws, closes what was started. */
export async function orClose<R>(started: readonly Closable[], setUp: () => Promise<R>): Promise<R> {
  try {
    return await setUp();
  } catch (e) {
    await closeAll(started);
    throw e;
  }
}

async function closeAll(started: readonly Closable[]): Promise<void> {
  await Promise.allSettled(started.map((s) => s.close()));
}
