/**
 * The proxies in front of a balancer whose word it takes (`balancer.trustedProxies`): a TLS terminator or load
 * balancer that sets `X-Forwarded-Proto`. From a trusted peer that header is passed on (its first value, when it is
 * `http` or `https`); from anyone else the balancer says `http`, whatever the client sent, so no client can make an
 * app think a plain request came over TLS. Entries are addresses or CIDR blocks, IPv4 or IPv6.
 */
import { BlockList, isIP } from 'node:net';
import { ConfigError } from '../core/errors.js';

/** Whether a peer address (as `socket.remoteAddress` gives it) is a trusted proxy. */
export type TrustedPeer = (address: string | undefined) => boolean;

/** The matcher for `entries`. @throws ConfigError naming the first entry that is neither an address nor a CIDR block. */
export function trustedProxies(entries: readonly string[]): TrustedPeer {
  if (entries.length === 0) return () => false;
  const list = new BlockList();
  for (const entry of entries) {
    const [address = '', prefix, extra] = entry.split('/');
    const family = isIP(address);
    const bits = prefix === undefined ? undefined : Number(prefix);
    const max = family === 6 ? 128 : 32;
    if (family === 0 || extra !== undefined || (bits !== undefined && (!/^\d{1,3}$/.test(prefix!) || bits > max))) {
      throw new ConfigError(`balancer.trustedProxies: '${entry}' is not an IP address or CIDR block (like 10.0.0.0/8 or fd00::/8)`, { details: { path: 'balancer.trustedProxies' } });
    }
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, bits, type);
  }
  return (peer) => {
    if (peer === undefined) return false;
    const address = peer.startsWith('::ffff:') && isIP(peer.slice(7)) === 4 ? peer.slice(7) : peer;
    const family = isIP(address);
    return family !== 0 && list.check(address, family === 6 ? 'ipv6' : 'ipv4');
  };
}

/** The scheme to tell the app: the trusted proxy's `X-Forwarded-Proto` (first value, http or https), else http. */
export function forwardedProto(isTrusted: boolean, header: string | string[] | undefined): 'http' | 'https' {
  if (!isTrusted || header === undefined) return 'http';
  const first = (Array.isArray(header) ? header[0] : header)?.split(',')[0]?.trim().toLowerCase();
  return first === 'https' ? 'https' : 'http';
}
