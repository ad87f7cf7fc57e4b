/** Runs an async task one pass at a time; calls that arrive during a pass coalesce into exactly one more pass. */
export class Coalesced {
  private running: Promise<void> | undefined;
  private isAgain = false;

  /** @param task one pass; a rejection goes to `onError` and never stops later passes. */
  constructor(
    private readonly task: () => Promise<void>,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Starts a pass now, or marks that one more is wanted after the current one. */
  kick(): void {
    if (this.running) {
      this.isAgain = true;
      return;
    }
    this.running = this.task()
      .catch((err: Error) => this.onError(err))
      .finally(() => {
        this.running = undefined;
        if (this.isAgain) {
          this.isAgain = false;
          this.kick();
        }
      });
  }

  /** Resolves when no pass is running (a wanted follow-up pass is not waited for). */
  async idle(): Promise<void> {
    await this.running;
  }
}
