/**
 * Proves that the TCP listener on an instance's port belongs to that instance's vassal, before the runner sends it
 * a request or reports it ready (an app that binds another app's port first would otherwise get its traffic).
 *
 * Proof, from the kernel's own tables: every LISTEN socket on the port (any address, IPv4 and IPv6, in
 * `/proc/net/tcp` and `/proc/net/tcp6`) is (1) owned by the uid the vassal runs as — uWSGI binds its sockets after
 * dropping to `uid` (checked with Debian's 2.0.21: `setuid()` is logged before `bind()`), so the socket's uid is
 * the app's — and (2) its socket inode is held open by the vassal's master (pid from the emperor's stats socket)
 * or one of its descendants (`/proc/<pid>/fd`). (2) alone holds when the runner is not root and every app shares
 * its uid. A squatter can neither forge its socket's uid nor put its socket into the vassal's fd table.
 */
import { readFile, readdir, readlink } from 'node:fs/promises';
import { PierError } from '../core/errors.js';

/** What holds the port: nothing yet, the vassal, or someone else (`uid`/`inode` of the first foreign socket). */
export type ListenerVerdict =
  | { state: 'none' }
  | { state: 'ours' }
  | { state: 'foreign'; uid: number; inode: number; reason: string };

export interface ListenerOwner {
  /**
   * The vassal's master pid, or undefined when the emperor runs no process for it right now. Pass a function (one
   * that asks the emperor) rather than a pid read beforehand: it is called only after the kernel's table was read,
   * so a vassal the emperor spawns meanwhile is already known to it (a pid read first would miss it, and the
   * vassal's own fresh socket would be judged a squatter's).
   */
  vassalPid: number | undefined | (() => Promise<number | undefined>);
  /** The uid the vassal runs as; undefined skips the uid check. */
  uid?: number;
}

interface ListenSocket {
  uid: number;
  inode: number;
}

/**
 * Judges who listens on `port` (see the module comment). Order matters: the sockets first, then who the vassal is,
 * then the fds; any socket in the table was bound before the vassal was looked up.
 */
export async function checkListener(port: number, owner: ListenerOwner): Promise<ListenerVerdict> {
  const sockets = await listenSockets(port);
  if (sockets.length === 0) return { state: 'none' };
  if (owner.uid !== undefined) {
    const stranger = sockets.find((s) => s.uid !== owner.uid);
    if (stranger) return { state: 'foreign', ...stranger, reason: `port ${port} is held by uid ${stranger.uid}, not the app's uid ${owner.uid}` };
  }
  const vassalPid = typeof owner.vassalPid === 'function' ? await owner.vassalPid() : owner.vassalPid;
  // The master holds the sockets it bound (workers inherit them): look there first, and walk its tree only if needed.
  let held = vassalPid === undefined ? new Set<number>() : await socketInodes([vassalPid]);
  if (vassalPid !== undefined && sockets.some((s) => !held.has(s.inode))) held = await socketInodes(await processTree(vassalPid));
  const stranger = sockets.find((s) => !held.has(s.inode));
  if (stranger) return { state: 'foreign', ...stranger, reason: `port ${port} is held by a socket (inode ${stranger.inode}) no process of the vassal holds` };
  return { state: 'ours' };
}

/** LISTEN sockets on `port`, on any local address. */
export async function listenSockets(port: number): Promise<ListenSocket[]> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const found: ListenSocket[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = await readFile(table, 'utf8');
    } catch {
      continue; // no IPv6 on this machine
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue;
      if (f[1]!.slice(f[1]!.lastIndexOf(':') + 1) !== hexPort) continue;
      found.push({ uid: Number(f[7]), inode: Number(f[9]) });
    }
  }
  return found;
}

/** `root` and every live descendant of it. */
async function processTree(root: number): Promise<number[]> {
  const children = new Map<number, number[]>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // exited while we looked
    }
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!) ?? []));
  return tree;
}

/** Inodes of the sockets the processes hold open. */
async function socketInodes(pids: number[]): Promise<Set<number>> {
  const inodes = new Set<number>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = await readdir(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      const match = /^socket:\[(\d+)\]$/.exec(target);
      if (match) inodes.add(Number(match[1]));
    }
  }
  return inodes;
}

/** The instance's port is held by someone else: the runner moves the instance to another port. */
export class PortSquattedError extends PierError {
  constructor(readonly port: number, reason: string) {
    super('PIER_ILLEGAL_STATE', `${reason}; the instance moves to another port`, { details: { port } });
  }
}
