/** Reads the uWSGI emperor's stats socket (`--emperor-stats`): which vassals run, and which are blacklisted. */
import { createConnection } from 'node:net';
import { TimeoutError } from '../core/errors.js';

/** One running vassal as the emperor sees it. */
export interface VassalStatus {
  /** Vassal name (file name without `.ini`). */
  name: string;
  /** Its uWSGI master's pid. */
  pid: number;
  /** True once uWSGI says it accepts requests. */
  isAccepting: boolean;
  /** True once it has told the emperor it started properly. */
  isLoyal: boolean;
  /** True while the emperor is stopping it (after its file was removed or changed). */
  isCursed: boolean;
  /** How many times the emperor has restarted it. */
  respawns: number;
}

/** A vassal that kept dying and is being restarted with growing delays. */
export interface BlacklistedVassal {
  name: string;
  attempts: number;
}

/** The emperor's view of its vassals. */
export interface EmperorStatus {
  pid: number;
  vassals: VassalStatus[];
  blacklist: BlacklistedVassal[];
}

/** Largest stats document read (the emperor writes one JSON object and closes). */
const MAX_STATS_BYTES = 4 * 1024 * 1024;

/** Connects to the stats socket at `path` and parses what the emperor writes. */
export function readEmperorStats(path: string, timeoutMs = 2000): Promise<EmperorStatus> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path });
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => socket.destroy(new TimeoutError(`emperor stats at ${path} timed out after ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_STATS_BYTES) socket.destroy(new Error('emperor stats document too large'));
      else chunks.push(chunk);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.once('end', () => {
      clearTimeout(timer);
      try {
        resolve(parseStats(Buffer.concat(chunks).toString('utf8')));
      } catch (err) {
        reject(err);
      }
    });
  });
}

interface RawStats {
  pid: number;
  vassals?: Array<{ id: string; pid: number; accepting: number; loyal: number; cursed: number; respawns: number }>;
  blacklist?: Array<{ id: string; attempt: number }>;
}

function parseStats(text: string): EmperorStatus {
  const raw = JSON.parse(text) as RawStats;
  const name = (id: string): string => id.replace(/\.ini$/, '');
  return {
    pid: raw.pid,
    vassals: (raw.vassals ?? []).map((v) => ({
      name: name(v.id),
      pid: v.pid,
      isAccepting: v.accepting > 0,
      isLoyal: v.loyal > 0,
      isCursed: v.cursed > 0,
      respawns: v.respawns,
    })),
    blacklist: (raw.blacklist ?? []).map((b) => ({ name: name(b.id), attempts: b.attempt })),
  };
}
