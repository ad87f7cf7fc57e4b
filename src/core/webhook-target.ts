/**
 * Where an owner's alert webhook may point: the rules that keep a hostile owner from aiming the leader's POSTs at the
 * platform itself (SSRF). An address is refused when it is loopback, private (RFC 1918, carrier NAT, unique local),
 * link-local (cloud metadata at 169.254.169.254), multicast, unspecified, reserved (documentation, benchmarking,
 * broadcast, 240/4, IPv6 tunnels to hidden IPv4), or one of this host's own addresses; IPv4 embedded in IPv6
 * (mapped, compatible, translated, NAT64, 6to4) is judged as that IPv4. Names are judged by every address they
 * resolve to, when set and again at delivery, where the connection goes to the checked address (guardedLookup),
 * so a rebinding name cannot switch between the check and the connect. Pure, apart from DNS and the interface list.
 */
import { lookup as dnsLookup } from 'node:dns';
import { isIPv4, isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';

/** Each rule an owner's webhook address can break; messages end with `(rule <name>)`. */
export const WEBHOOK_ADDRESS_RULES = ['loopback', 'private', 'link-local', 'multicast', 'unspecified', 'reserved', 'this-host'] as const;
export type WebhookAddressRule = (typeof WEBHOOK_ADDRESS_RULES)[number];

const WHAT: Record<WebhookAddressRule, string> = {
  loopback: 'a loopback address',
  private: 'a private address',
  'link-local': 'a link-local address',
  multicast: 'a multicast address',
  unspecified: 'an unspecified address',
  reserved: 'a reserved address',
  'this-host': "one of the nexus host's own addresses",
};

/** The rule an IP address (v4 or v6, no brackets) breaks as an owner's webhook target, or undefined when it is public. */
export function addressRule(address: string, ownAddresses: readonly string[] = hostAddresses()): WebhookAddressRule | undefined {
  const ip = address.replace(/^\[|\]$/g, '');
  const v4 = parseIPv4(ip);
  const words = v4 === undefined ? parseIPv6(ip) : undefined;
  if (v4 === undefined && !words) return 'reserved'; // not an address we can judge: refuse rather than guess
  const rule = v4 !== undefined ? ipv4Rule(v4) : ipv6Rule(words!);
  if (rule) return rule;
  const want = normalise(ip);
  return ownAddresses.some((own) => normalise(own) === want) ? 'this-host' : undefined;
}

/** Every address of this host's interfaces (a public one may serve the nexus's API or PostgreSQL). */
export function hostAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}

/** One line naming the refused host, the address it came to, its rule, and what to do instead. */
export function addressRefusalMessage(host: string, address: string, rule: WebhookAddressRule): string {
  const via = host === address ? `is ${WHAT[rule]}` : `resolves to ${address}, ${WHAT[rule]}`;
  return `webhook host ${host} ${via} (rule ${rule}); an app's alerts go to public addresses only — give a public http(s) URL`;
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Every address a name resolves to (the system resolver, as a connection would use it). */
export function resolveAll(host: string): Promise<ResolvedAddress[]> {
  return new Promise((resolve, reject) => {
    dnsLookup(host, { all: true, verbatim: true }, (err, addresses) => {
      if (err) reject(err);
      else resolve(addresses.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 })));
    });
  });
}

export interface TargetCheck {
  /** The rule an address breaks, or undefined when allowed. @default addressRule (with this host's addresses) */
  rule?: (address: string) => string | undefined;
  /** @default resolveAll */
  resolve?: (host: string) => Promise<ResolvedAddress[]>;
}

/** The refusal of a URL's host by name alone (an IP literal, or a `localhost` name), or undefined. */
export function literalRefusal(url: URL, check: TargetCheck = {}): string | undefined {
  const host = hostOf(url);
  if (isIPv4(host) || isIPv6(host)) {
    const rule = (check.rule ?? addressRule)(host);
    return rule ? addressRefusalMessage(host, host, rule as WebhookAddressRule) : undefined;
  }
  const name = host.toLowerCase().replace(/\.$/, '');
  // RFC 6761: localhost and every name under it are loopback, whatever a resolver says.
  if (name === 'localhost' || name.endsWith('.localhost')) return addressRefusalMessage(host, '127.0.0.1', 'loopback');
  return undefined;
}

/**
 * The refusal of a URL as an owner's webhook when it is set: its literal host, else every address its name resolves
 * to now. A name that does not resolve (yet) is accepted: delivery checks it again. Waits at most `timeoutMs` for DNS.
 */
export async function webhookTargetRefusal(url: URL, check: TargetCheck = {}, timeoutMs = 2000): Promise<string | undefined> {
  const literal = literalRefusal(url, check);
  const host = hostOf(url);
  if (literal || isIPv4(host) || isIPv6(host)) return literal;
  let timer: NodeJS.Timeout | undefined;
  const addresses = await Promise.race([
    (check.resolve ?? resolveAll)(host).catch(() => [] as ResolvedAddress[]),
    new Promise<ResolvedAddress[]>((resolve) => (timer = setTimeout(() => resolve([]), timeoutMs))),
  ]).finally(() => clearTimeout(timer));
  for (const a of addresses) {
    const rule = (check.rule ?? addressRule)(a.address);
    if (rule) return addressRefusalMessage(host, a.address, rule as WebhookAddressRule);
  }
  return undefined;
}

/** An error a guarded connection fails with; `code` lets the sender tell it from a network failure. */
export class WebhookRefusedError extends Error {
  readonly code = 'PIER_WEBHOOK_REFUSED';
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | Array<{ address: string; family: number }>, family?: number) => void;

/**
 * A `lookup` for net/tls.connect that resolves once, refuses when ANY resolved address breaks a rule, and hands the
 * connection exactly the addresses it checked. (Connect skips lookup for IP literals: check those with literalRefusal.)
 */
export function guardedLookup(check: TargetCheck = {}): (host: string, options: { all?: boolean }, callback: LookupCallback) => void {
  return (host, options, callback) => {
    (check.resolve ?? resolveAll)(host).then((addresses) => {
      if (addresses.length === 0) throw Object.assign(new Error(`webhook host ${host} resolves to no address`), { code: 'ENOTFOUND' });
      for (const a of addresses) {
        const rule = (check.rule ?? addressRule)(a.address);
        if (rule) throw new WebhookRefusedError(addressRefusalMessage(host, a.address, rule as WebhookAddressRule));
      }
      if (options.all) callback(null, addresses.map((a) => ({ address: a.address, family: a.family })));
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    }).catch((err: NodeJS.ErrnoException) => callback(err, ''));
  };
}

/** A URL's hostname without IPv6 brackets. */
export function hostOf(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '');
}

function normalise(ip: string): string {
  const v4 = parseIPv4(ip);
  if (v4 !== undefined) return `4:${v4}`;
  const words = parseIPv6(ip);
  return words ? `6:${words.join(':')}` : ip;
}

/** Dotted-quad IPv4 (the only form URLs and resolvers hand over) as an unsigned 32-bit number. */
function parseIPv4(ip: string): number | undefined {
  if (!isIPv4(ip)) return undefined;
  return ip.split('.').reduce((n, part) => n * 256 + Number(part), 0);
}

/** IPv6 as eight 16-bit words (a zone is dropped, an embedded dotted IPv4 tail is read), or undefined. */
function parseIPv6(ip: string): number[] | undefined {
  const text = ip.replace(/%.*$/, '');
  if (!isIPv6(text)) return undefined;
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const wordsOf = (part: string): number[] => {
    if (part === '') return [];
    return part.split(':').flatMap((w) => {
      if (w.includes('.')) {
        const v4 = parseIPv4(w)!;
        return [Math.floor(v4 / 65536), v4 % 65536];
      }
      return [parseInt(w, 16)];
    });
  };
  const a = wordsOf(head);
  if (tail === undefined) return a;
  const b = wordsOf(tail);
  return [...a, ...new Array<number>(8 - a.length - b.length).fill(0), ...b];
}

function inV4(n: number, base: string, bits: number): boolean {
  const size = 2 ** (32 - bits);
  const start = parseIPv4(base)!;
  return n >= start && n < start + size;
}

function ipv4Rule(n: number): WebhookAddressRule | undefined {
  if (inV4(n, '0.0.0.0', 8)) return 'unspecified';
  if (inV4(n, '127.0.0.0', 8)) return 'loopback';
  if (inV4(n, '10.0.0.0', 8) || inV4(n, '172.16.0.0', 12) || inV4(n, '192.168.0.0', 16) || inV4(n, '100.64.0.0', 10)) return 'private';
  if (inV4(n, '169.254.0.0', 16)) return 'link-local';
  if (inV4(n, '224.0.0.0', 4)) return 'multicast';
  if (inV4(n, '240.0.0.0', 4) || inV4(n, '192.0.0.0', 24) || inV4(n, '192.0.2.0', 24) || inV4(n, '198.51.100.0', 24)
    || inV4(n, '203.0.113.0', 24) || inV4(n, '198.18.0.0', 15) || inV4(n, '192.88.99.0', 24)) return 'reserved';
  return undefined;
}

function ipv6Rule(w: number[]): WebhookAddressRule | undefined {
  const v4 = (hi: number, lo: number): number => hi * 65536 + lo;
  const zeros = (from: number, to: number): boolean => w.slice(from, to).every((x) => x === 0);
  if (zeros(0, 8)) return 'unspecified';
  if (zeros(0, 7) && w[7] === 1) return 'loopback';
  // IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d, IPv4-translated ::ffff:0:a.b.c.d: judged as the IPv4,
  // and refused anyway (a webhook has no business using them).
  if (zeros(0, 5) && w[5] === 0xffff) return ipv4Rule(v4(w[6]!, w[7]!)) ?? 'reserved';
  if (zeros(0, 6)) return ipv4Rule(v4(w[6]!, w[7]!)) ?? 'reserved';
  if (zeros(0, 4) && w[4] === 0xffff && w[5] === 0) return ipv4Rule(v4(w[6]!, w[7]!)) ?? 'reserved';
  // NAT64 64:ff9b::/96 reaches the embedded IPv4; the local-use 64:ff9b:1::/48 is private.
  if (w[0] === 0x64 && w[1] === 0xff9b && zeros(2, 6)) return ipv4Rule(v4(w[6]!, w[7]!));
  if (w[0] === 0x64 && w[1] === 0xff9b && w[2] === 1) return 'private';
  // 6to4 2002:AABB:CCDD::/48 reaches AA.BB.CC.DD.
  if (w[0] === 0x2002) return ipv4Rule(v4(w[1]!, w[2]!));
  const w0 = w[0]!;
  if ((w0 & 0xfe00) === 0xfc00) return 'private'; // unique local fc00::/7
  if ((w0 & 0xffc0) === 0xfe80) return 'link-local';
  if ((w0 & 0xffc0) === 0xfec0) return 'private'; // site-local (deprecated)
  if ((w0 & 0xff00) === 0xff00) return 'multicast';
  if (w0 === 0x2001 && (w[1] === 0 || w[1] === 0xdb8)) return 'reserved'; // Teredo (hides an IPv4), documentation
  if (w0 === 0x100 && zeros(1, 4)) return 'reserved'; // discard-only 100::/64
  if (w0 === 0x3fff && w[1]! < 0x1000) return 'reserved'; // documentation 3fff::/20
  if ((w0 & 0xe000) !== 0x2000) return 'reserved'; // outside global unicast 2000::/3
  return undefined;
}
