/**
 * Which roles' keys each server socket lets in. Every CURVE server socket names its ZAP domain; the ZAP handler
 * admits a key only when its role is listed for that domain, so e.g. a balancer key cannot even connect to a
 * collector's query socket. Commands on the control socket are checked once more, per role (COMMAND_ROLES).
 */
import type { PeerRole } from '../protocol/index.js';

export const ZAP_DOMAINS = {
  /** Nexus control ROUTER (each command lists its roles in COMMAND_ROLES). */
  'pier.control': ['nexus', 'runner', 'balancer', 'stats', 'operator'],
  /** Nexus event PUB: the nodes that follow the cluster state. */
  'pier.events': ['runner', 'balancer', 'stats', 'operator'],
  /** Nexus heartbeat SUB. */
  'pier.heartbeats': ['runner', 'balancer', 'stats'],
  /** Collector intake PULL: runners push log lines, balancers access records. */
  'pier.intake': ['runner', 'balancer'],
  /** Collector query ROUTER and live tail PUB: the nexus's API (and operator tools). */
  'pier.query': ['nexus', 'operator'],
  /** Nexus sessions ROUTER (one-offs, `pier run`): runners only. */
  'pier.sessions': ['runner'],
  /** Sockets made without a domain (tools, benches): any allowed key. */
  pier: ['nexus', 'runner', 'balancer', 'stats', 'operator'],
} as const satisfies Record<string, readonly PeerRole[]>;

export type ZapDomain = keyof typeof ZAP_DOMAINS;
export const DEFAULT_ZAP_DOMAIN: ZapDomain = 'pier';

/** True when a key of `role` may connect to a socket of `domain`; unknown domains admit no one. */
export function isAdmitted(domain: string, role: PeerRole): boolean {
  return Object.hasOwn(ZAP_DOMAINS, domain) && (ZAP_DOMAINS[domain as ZapDomain] as readonly PeerRole[]).includes(role);
}
