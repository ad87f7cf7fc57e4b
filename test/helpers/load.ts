/** A steady, bounded HTTP load through the balancer: a few keep-alive workers, each sending one request at a time. */
import { Agent, request } from 'undici';

export interface LoadResult {
  ok: number;
  failed: number;
  /** The first few failures: status or error, and when (ms after start). */
  failures: string[];
  /** Requests per second achieved. */
  rate: number;
  /** Latency percentiles of all requests, in ms. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export class SteadyLoad {
  private readonly agent = new Agent({ keepAliveTimeout: 10_000, connections: 16 });
  private isRunning = false;
  private workers: Promise<void>[] = [];
  private ok = 0;
  private failed = 0;
  private readonly failures: string[] = [];
  private readonly latenciesMs: number[] = [];
  private startedAt = 0;

  /** @param pauseMs pause between a worker's requests, which bounds the rate */
  constructor(private readonly url: string, private readonly host: string, private readonly concurrency = 4, private readonly pauseMs = 5) {}

  start(): void {
    this.isRunning = true;
    this.startedAt = Date.now();
    this.workers = Array.from({ length: this.concurrency }, () => this.work());
  }

  private async work(): Promise<void> {
    while (this.isRunning) {
      const sentAt = performance.now();
      try {
        const res = await request(this.url, { headers: { host: this.host }, dispatcher: this.agent, headersTimeout: 10_000, bodyTimeout: 10_000 });
        await res.body.text();
        this.latenciesMs.push(performance.now() - sentAt);
        if (res.statusCode === 200) this.ok += 1;
        else this.fail(`HTTP ${res.statusCode}`);
      } catch (err) {
        this.fail((err as Error).message);
      }
      if (this.pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, this.pauseMs));
    }
  }

  private fail(what: string): void {
    this.failed += 1;
    if (this.failures.length < 10) this.failures.push(`${what} at +${Date.now() - this.startedAt} ms`);
  }

  /** Counts so far, without stopping. */
  get sent(): number {
    return this.ok + this.failed;
  }

  async stop(): Promise<LoadResult> {
    this.isRunning = false;
    await Promise.all(this.workers);
    await this.agent.close();
    const seconds = (Date.now() - this.startedAt) / 1000;
    const sorted = [...this.latenciesMs].sort((a, b) => a - b);
    const at = (q: number): number => Math.round((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0) * 10) / 10;
    return {
      ok: this.ok, failed: this.failed, failures: this.failures, rate: Math.round((this.ok + this.failed) / seconds),
      p50Ms: at(0.5), p99Ms: at(0.99), maxMs: at(1),
    };
  }
}
