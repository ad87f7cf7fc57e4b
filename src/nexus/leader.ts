/**
 * Leader election: one replica at a time holds a PostgreSQL session advisory lock on a dedicated connection.
 * Losing that connection releases the lock server-side, so a dead leader is replaced within one poll; a
 * replica whose connection drops stops acting as leader at once (it cannot know whether it still holds it).
 */
import pg from 'pg';
import type { Logger } from 'pino';
import { ADVISORY } from '../db/index.js';

export interface LeaderElectorOptions {
  url: string;
  /** How often a follower tries to take the lock (and a leader checks its connection). */
  pollMs: number;
  log: Logger;
  onChange?: (isLeader: boolean) => void;
}

export class LeaderElector {
  isLeader = false;
  /** Backend pid of the lock connection (recorded on the nexus's node row, to show who leads). */
  backendPid: number | null = null;
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private isStopped = false;
  private isBusy = false;
  private readonly log: Logger;

  constructor(private readonly options: LeaderElectorOptions) {
    this.log = options.log.child({ component: 'nexus.leader' });
  }

  async start(): Promise<void> {
    await this.poll();
    this.timer = setInterval(() => void this.poll(), this.options.pollMs);
  }

  private async poll(): Promise<void> {
    if (this.isBusy || this.isStopped) return;
    this.isBusy = true;
    try {
      const client = this.client ?? (await this.connect());
      if (this.isLeader) {
        await client.query('SELECT 1');
      } else {
        const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [ADVISORY.namespace, ADVISORY.leader]);
        if (rows[0]?.ok) this.setLeader(true);
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'leader connection failed');
      this.dropConnection();
    } finally {
      this.isBusy = false;
    }
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.options.url, application_name: 'pier-nexus-leader', connectionTimeoutMillis: this.options.pollMs * 4 });
    client.on('error', () => this.dropConnection());
    client.on('end', () => this.dropConnection());
    await client.connect();
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    this.backendPid = rows[0]!.pid;
    this.client = client;
    return client;
  }

  private dropConnection(): void {
    const client = this.client;
    this.client = undefined;
    this.backendPid = null;
    this.setLeader(false);
    client?.end().catch(() => undefined);
  }

  private setLeader(isLeader: boolean): void {
    if (this.isLeader === isLeader) return;
    this.isLeader = isLeader;
    this.log.info({ isLeader }, isLeader ? 'became leader' : 'no longer leader');
    this.options.onChange?.(isLeader);
  }

  async stop(): Promise<void> {
    this.isStopped = true;
    clearInterval(this.timer);
    const client = this.client;
    this.client = undefined;
    this.isLeader = false;
    // Ending the session releases the advisory lock, so another replica can lead at once.
    await client?.end().catch(() => undefined);
  }
}
