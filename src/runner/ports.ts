/** Hands out instance ports from the runner's range: never one in use by another instance or bound by anyone. */
import { createServer } from 'node:net';
import { PierError } from '../core/errors.js';

export class PortPool {
  private readonly taken = new Set<number>();
  private next: number;

  constructor(
    private readonly min: number,
    private readonly max: number,
    private readonly host = '127.0.0.1',
  ) {
    this.next = min;
  }

  /** Marks a port as used (an adopted instance's). */
  claim(port: number): void {
    this.taken.add(port);
  }

  release(port: number): void {
    this.taken.delete(port);
  }

  /** The next free port, round-robin through the range so a just-freed port is not reused at once. */
  async allocate(): Promise<number> {
    const size = this.max - this.min + 1;
    for (let i = 0; i < size; i++) {
      const port = this.next;
      this.next = port >= this.max ? this.min : port + 1;
      if (this.taken.has(port)) continue;
      if (await isFree(this.host, port)) {
        this.taken.add(port);
        return port;
      }
    }
    throw new PierError('PIER_ILLEGAL_STATE', `no free port in ${this.min}-${this.max}`);
  }
}

function isFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
