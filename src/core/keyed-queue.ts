/** Runs jobs one after another per key (jobs of different keys run side by side). */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `job` after every job queued for `key` so far has settled; its own result or failure comes back. */
  run<T>(key: string, job: () => Promise<T>): Promise<T> {
    const next = (this.tails.get(key) ?? Promise.resolve()).catch(() => undefined).then(job);
    this.tails.set(key, next);
    void next.catch(() => undefined).finally(() => {
      if (this.tails.get(key) === next) this.tails.delete(key);
    });
    return next;
  }

  /** Resolves once every job queued for `key` so far has settled. */
  async settled(key: string): Promise<void> {
    await this.tails.get(key)?.catch(() => undefined);
  }

  /** Resolves once no job is queued for any key (jobs queued meanwhile included). */
  async idle(): Promise<void> {
    while (this.tails.size > 0) await Promise.all([...this.tails.values()].map((tail) => tail.catch(() => undefined)));
  }
}
