/**
 * Run `work` over `items` with at most `limit` in flight. On the first failure
 * no new item is started; the ones in flight are awaited (so no write is left
 * running behind our back) and the first error is rethrown.
 */
export async function forEachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let firstError: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (firstError === undefined && next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (error) {
        firstError ??= { error };
      }
    }
  };
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker);
  await Promise.all(workers);
  if (firstError) throw firstError.error;
}
