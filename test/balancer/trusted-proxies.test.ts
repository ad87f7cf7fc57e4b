/** balancer.trustedProxies: whose X-Forwarded-Proto the balancer passes on (pure), and that a bad entry fails the config. */
import { describe, expect, it } from 'vitest';
import { forwardedProto, trustedProxies } from '../../src/balancer/trusted-proxies.js';
import { loadConfig } from '../../src/config/index.js';

describe('balancer.trustedProxies', () => {
  it('matches addresses and CIDR blocks, IPv4 (also mapped into IPv6) and IPv6', () => {
    const isTrusted = trustedProxies(['10.0.0.0/8', '192.0.2.7', 'fd00::/8']);
    expect(['10.1.2.3', '::ffff:10.9.9.9', '192.0.2.7', 'fd12::1'].map(isTrusted)).toEqual([true, true, true, true]);
    expect(['11.0.0.1', '192.0.2.8', '::1', 'fe80::1', 'not-an-ip', undefined].map(isTrusted)).toEqual([false, false, false, false, false, false]);
    expect(trustedProxies([])('127.0.0.1')).toBe(false);
  });

  it("passes on a trusted proxy's first scheme when it is http or https, and says http otherwise", () => {
    expect(forwardedProto(true, 'https')).toBe('https');
    expect(forwardedProto(true, 'HTTPS, http')).toBe('https');
    expect(forwardedProto(true, ['https'])).toBe('https');
    expect(forwardedProto(true, 'ftp')).toBe('http');
    expect(forwardedProto(true, undefined)).toBe('http');
    expect(forwardedProto(false, 'https')).toBe('http');
  });

  it('refuses an entry that is neither an address nor a CIDR block, in one line naming it', () => {
    for (const bad of ['10.0.0.0/33', 'example.com', '10.0.0.1/8/2', '::1/129', '10.0.0.0/x']) {
      expect(() => loadConfig({ overrides: { balancer: { trustedProxies: [bad] } } })).toThrow(
        `balancer.trustedProxies: '${bad}' is not an IP address or CIDR block (like 10.0.0.0/8 or fd00::/8)`,
      );
    }
    expect(loadConfig({ overrides: { balancer: { trustedProxies: ['10.0.0.0/8'] } } }).balancer.trustedProxies).toEqual(['10.0.0.0/8']);
  });
});
