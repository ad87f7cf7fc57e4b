/**
 * Webhook target rules (#11 follow-up, SSRF): every spelling of an address an app's alerts must not reach is refused
 * by the rule naming it — IPv4 and IPv6, numeric URL forms, IPv4 hidden in IPv6, `localhost` names, a real name the
 * system resolver turns into loopback, this host's own addresses — while public addresses pass.
 */
import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { addressRule, literalRefusal, WEBHOOK_ADDRESS_RULES, webhookTargetRefusal, type WebhookAddressRule } from '../../src/core/webhook-target.js';

/** Addresses as a resolver hands them over, by the rule that must refuse them. */
const ADDRESSES: Record<WebhookAddressRule, string[]> = {
  loopback: ['127.0.0.1', '127.255.0.9', '::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '64:ff9b::7f00:1', '2002:7f00:1::1', '::127.0.0.1'],
  private: ['10.0.0.1', '10.255.255.255', '172.16.0.1', '172.31.255.254', '192.168.1.1', '100.64.0.1', 'fd00::2', 'fc00::1', '::ffff:10.1.2.3', 'fec0::1', '64:ff9b:1::1'],
  'link-local': ['169.254.169.254', '169.254.0.1', 'fe80::1', 'fe80::1%eth0', '::ffff:169.254.169.254', '::ffff:a9fe:a9fe'],
  multicast: ['224.0.0.1', '239.255.255.250', 'ff02::1', 'ff05::2'],
  unspecified: ['0.0.0.0', '0.1.2.3', '::', '::ffff:0.0.0.0'],
  reserved: ['255.255.255.255', '240.0.0.1', '192.0.2.2', '198.51.100.7', '203.0.113.9', '198.18.0.1', '2001:db8::1', '2001:0:4136:e378::1', '100::1', '::ffff:8.8.8.8', 'not-an-address'],
  'this-host': [],
};

const PUBLIC = ['93.184.216.34', '8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '2a00:1450:4001::200e', '64:ff9b::808:808', '2002:808:808::1'];

/** URLs in the spellings an attacker would try, with the rule each must break. */
const URLS: Array<[string, WebhookAddressRule]> = [
  ['http://127.0.0.1/hook', 'loopback'],
  ['http://[::1]:5432/', 'loopback'],
  ['https://10.1.2.3/x', 'private'],
  ['http://169.254.169.254/latest/meta-data/', 'link-local'],
  ['http://localhost:8080/', 'loopback'],
  ['http://LOCALHOST./', 'loopback'],
  ['http://api.nexus.localhost/', 'loopback'],
  ['http://2130706433/', 'loopback'], // decimal
  ['http://0177.0.0.1/', 'loopback'], // octal
  ['http://0x7f.0.0.1/', 'loopback'], // hex
  ['http://0x7f000001/', 'loopback'],
  ['http://127.1/', 'loopback'],
  ['http://[::ffff:127.0.0.1]/', 'loopback'], // IPv4-mapped IPv6
  ['http://[::ffff:169.254.169.254]/', 'link-local'],
  ['http://[0:0:0:0:0:ffff:7f00:1]/', 'loopback'],
  ['http://0/', 'unspecified'],
  ['http://[::]/', 'unspecified'],
  ['http://[fe80::1]/', 'link-local'],
  ['http://[ff02::1]/', 'multicast'],
];

describe('webhook target rules', () => {
  it('refuses each address by the rule that names it, and passes public ones', () => {
    for (const [rule, addresses] of Object.entries(ADDRESSES)) {
      for (const address of addresses) expect(addressRule(address, []), address).toBe(rule);
    }
    for (const address of PUBLIC) expect(addressRule(address, []), address).toBeUndefined();
    expect(Object.keys(ADDRESSES).sort()).toEqual([...WEBHOOK_ADDRESS_RULES].sort());
  });

  it("refuses this host's own addresses even when they are public", () => {
    expect(addressRule('93.184.216.34', ['127.0.0.1', '93.184.216.34'])).toBe('this-host');
    expect(addressRule('2606:4700::1', ['2606:4700:0:0:0:0:0:1'])).toBe('this-host');
    expect(addressRule('93.184.216.35', ['93.184.216.34'])).toBeUndefined();
  });

  it('refuses every spelling of a forbidden host in a URL with a one-line message naming the rule', () => {
    for (const [text, rule] of URLS) {
      const message = literalRefusal(new URL(text), { rule: (a) => addressRule(a, []) });
      expect(message, text).toContain(`(rule ${rule})`);
      expect(message, text).toMatch(/^webhook host \S+ (is|resolves to) /);
      expect(message, text).not.toContain('\n');
    }
    expect(literalRefusal(new URL('https://93.184.216.34/hook'))).toBeUndefined();
    expect(literalRefusal(new URL('https://[2606:4700:4700::1111]/hook'))).toBeUndefined();
    expect(literalRefusal(new URL('https://hooks.example.com/pier'))).toBeUndefined(); // a name: judged by what it resolves to
  });

  it('refuses a real name the system resolver turns into loopback, and accepts one that does not resolve (delivery checks again)', async () => {
    // This machine's own name resolves to 127.0.0.1 through /etc/hosts: no "localhost" in it, a loopback all the same.
    const name = hostname();
    expect(await webhookTargetRefusal(new URL(`http://${name}:5432/`))).toMatch(new RegExp(`^webhook host ${name} resolves to 127\\.0\\.0\\.1, a loopback address \\(rule loopback\\)`));
    expect(await webhookTargetRefusal(new URL('https://no-such-host.invalid/hook'))).toBeUndefined();
    // A resolver that never answers does not hold the request past the time-out.
    const started = Date.now();
    expect(await webhookTargetRefusal(new URL('https://slow.example/hook'), { resolve: () => new Promise(() => undefined) }, 200)).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
