/**
 * Node liveness, one rule for the whole platform: a node is alive while the newest heartbeat known of it — received
 * by this nexus replica (in memory) or stored by any replica (nodes.last_heartbeat_at, written in batches) — is
 * younger than the dead-after budget (cluster.heartbeatIntervalMs × heartbeatMisses). A node never heard of is
 * 'unknown'. Nothing else decides liveness: the scheduler, `pier nodes`, `pier status` and the snapshots sent to
 * runners and balancers all ask this module. The stored `nodes.status` column is only the leader's memory of the
 * last node.down / node.up event it recorded (so a new leader does not repeat one), never read as liveness.
 */

/** What a node's newest heartbeat said besides its time. */
export interface BeatSummary {
  /** 1-minute load average of the node's machine. */
  load?: number;
  /** Instances the node runs (runners). */
  instances?: number;
  /** Drift the node's integrity checks repaired since it started. */
  repairs?: number;
}

export type LivenessStatus = 'alive' | 'dead' | 'unknown';

export class NodeLiveness {
  /** Node id → ms of the newest heartbeat this replica received. */
  readonly lastSeen = new Map<string, number>();
  /** Node id → what its newest heartbeat reported. */
  readonly summaries = new Map<string, BeatSummary>();

  /** @param deadAfterMs a node is dead after this long without a heartbeat. */
  constructor(readonly deadAfterMs: number) {}

  /** Records a heartbeat received now (or at `atMs`). */
  record(nodeId: string, summary: BeatSummary = {}, atMs = Date.now()): void {
    this.lastSeen.set(nodeId, Math.max(atMs, this.lastSeen.get(nodeId) ?? 0));
    this.summaries.set(nodeId, summary);
  }

  /** The newest heartbeat time known of a node: this replica's memory or the stored time, whichever is newer. */
  newestBeat(nodeId: string, storedMs: number | null = null): number | null {
    const seen = this.lastSeen.get(nodeId);
    if (seen === undefined) return storedMs;
    return Math.max(seen, storedMs ?? 0);
  }

  /** The rule: alive while the newest known heartbeat is younger than the dead-after budget. */
  status(nodeId: string, storedMs: number | null = null, nowMs = Date.now()): LivenessStatus {
    const newest = this.newestBeat(nodeId, storedMs);
    if (newest === null) return 'unknown';
    return nowMs - newest < this.deadAfterMs ? 'alive' : 'dead';
  }

  isAlive(nodeId: string, storedMs: number | null = null, nowMs = Date.now()): boolean {
    return this.status(nodeId, storedMs, nowMs) === 'alive';
  }

  /** Nodes this replica heard from that are alive now (memory only: cheap enough to ask every 100 ms). */
  aliveInMemory(nowMs = Date.now()): Set<string> {
    const alive = new Set<string>();
    for (const [id, seen] of this.lastSeen) if (nowMs - seen < this.deadAfterMs) alive.add(id);
    return alive;
  }

  /** Drops nodes silent for longer than `afterMs` (made-up ids cannot pile up); their stored time remains. */
  forget(afterMs: number, nowMs = Date.now()): void {
    for (const [id, at] of this.lastSeen) {
      if (nowMs - at > afterMs) {
        this.lastSeen.delete(id);
        this.summaries.delete(id);
      }
    }
  }
}
