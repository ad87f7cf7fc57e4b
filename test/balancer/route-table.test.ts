import { describe, expect, it } from 'vitest';
import { normalizeHost } from '../../src/balancer/host-match.js';
import { RouteTable, type RouteLookup } from '../../src/balancer/route-table.js';
import { connectionsFor } from '../../src/balancer/upstreams.js';
import type { App, Instance, Node, Snapshot, StateEvent } from '../../src/protocol/index.js';

function app(name: string, hostnames: string[] = []): App {
  return { name, owner: 'admin', webScale: 1, hostnames, createdAt: 0 };
}

function instance(id: string, appName: string, overrides: Partial<Instance> = {}): Instance {
  return {
    id, app: appName, release: 1, isLive: true, processType: 'web', runnerId: 'runner-1', host: '127.0.0.1', port: 20000 + Number(id.replace(/\D/g, '') || 0), state: 'ready',
    ...overrides,
  };
}

function snapshot(apps: App[], instances: Instance[] = [], version = 10): Snapshot {
  return { version, apps, nodes: [], instances };
}

let version = 100;
function event(type: StateEvent['type'], appName: string | null, data: Record<string, unknown> = {}): StateEvent {
  return { version: ++version, type, app: appName, data, at: Date.now() };
}

function appOf(lookup: RouteLookup): string | undefined {
  return lookup.kind === 'app' ? lookup.route.name : undefined;
}

describe("the balancers' shares of an instance's threads", () => {
  const node = (id: string, kind: Node['kind'], status: Node['status'] = 'alive'): Node =>
    ({ id, kind, address: '127.0.0.1', status, lastHeartbeatAt: 0, isLeader: false, info: {} });

  it('counts the balancers that are up, from the snapshot and node events, at least one', () => {
    const table = new RouteTable({ domain: 'localhost' });
    expect(table.balancerCount).toBe(1);
    table.load({ ...snapshot([]), nodes: [node('balancer-1', 'balancer'), node('balancer-2', 'balancer', 'dead'), node('runner-1', 'runner')] });
    expect(table.balancerCount).toBe(1);
    table.apply(event('node.up', null, { id: 'balancer-2', kind: 'balancer' }));
    table.apply(event('node.registered', null, { nodeId: 'balancer-3', kind: 'balancer', address: '127.0.0.1:80' }));
    table.apply(event('node.registered', null, { nodeId: 'runner-2', kind: 'runner', address: '127.0.0.1' }));
    expect(table.balancerCount).toBe(3);
    table.apply(event('node.down', null, { id: 'balancer-1', kind: 'balancer' }));
    expect(table.balancerCount).toBe(2);
  });

  it('keeps each balancer below its share of the capacity, one thread free, at least one connection', () => {
    expect(connectionsFor(undefined, 16)).toBe(16); // not reported: the configured most
    expect(connectionsFor(4, 16)).toBe(3);
    expect(connectionsFor(4, 16, 2)).toBe(1);
    expect(connectionsFor(9, 16, 2)).toBe(4);
    expect(connectionsFor(64, 16)).toBe(16);
    expect(connectionsFor(1, 16)).toBe(1);
    expect(connectionsFor(2, 16, 3)).toBe(1);
  });
});

describe('normalizeHost', () => {
  it('lower-cases, strips the port and a trailing dot', () => {
    expect(normalizeHost('Blog.Example.COM:8080')).toBe('blog.example.com');
    expect(normalizeHost('blog.example.com.')).toBe('blog.example.com');
    expect(normalizeHost('blog.example.com.:80')).toBe('blog.example.com');
    expect(normalizeHost('[::1]:8080')).toBe('[::1]');
    expect(normalizeHost('')).toBeUndefined();
    expect(normalizeHost(undefined)).toBeUndefined();
    expect(normalizeHost(':80')).toBeUndefined();
  });
});

describe('RouteTable', () => {
  it('routes exact hostnames and <app>.<domain> in any case and with a port', () => {
    const table = new RouteTable({ domain: 'pier.test' });
    table.load(snapshot([app('blog', ['www.blog.com']), app('shop')]));
    expect(appOf(table.lookup('www.blog.com'))).toBe('blog');
    expect(appOf(table.lookup('WWW.Blog.Com:8080'))).toBe('blog');
    expect(appOf(table.lookup('www.blog.com.'))).toBe('blog');
    expect(appOf(table.lookup('blog.pier.test'))).toBe('blog');
    expect(appOf(table.lookup('shop.pier.test:80'))).toBe('shop');
    expect(table.lookup('nope.pier.test')).toEqual({ kind: 'unknown', host: 'nope.pier.test' });
    expect(table.lookup(undefined)).toEqual({ kind: 'unknown', host: '' });
    expect(table.version).toBe(10);
  });

  it('keeps stage.<app>.<domain> reserved (no route yet), even under a wildcard', () => {
    const table = new RouteTable({ domain: 'localhost' });
    table.load(snapshot([app('blog'), app('catch', ['*.localhost'])]));
    expect(table.lookup('stage.blog.localhost').kind).toBe('unknown');
    expect(appOf(table.lookup('other.localhost'))).toBe('catch');
    expect(appOf(table.lookup('blog.localhost'))).toBe('blog');
  });

  it('matches wildcards on one or more labels, longest suffix first, never the bare domain', () => {
    const table = new RouteTable({ domain: 'localhost' });
    table.load(snapshot([app('wide', ['*.example.com']), app('narrow', ['*.eu.example.com']), app('exact', ['shop.eu.example.com'])]));
    expect(appOf(table.lookup('a.example.com'))).toBe('wide');
    expect(appOf(table.lookup('a.b.example.com'))).toBe('wide');
    expect(appOf(table.lookup('a.eu.example.com'))).toBe('narrow');
    expect(appOf(table.lookup('x.y.eu.example.com:443'))).toBe('narrow');
    expect(appOf(table.lookup('eu.example.com'))).toBe('wide');
    expect(appOf(table.lookup('shop.eu.example.com'))).toBe('exact');
    expect(table.lookup('example.com').kind).toBe('unknown');
    expect(table.lookup('notexample.com').kind).toBe('unknown');
  });

  it('lets platform names win over an owner hostname that copies them', () => {
    const table = new RouteTable({ domain: 'localhost' });
    table.load(snapshot([app('blog'), app('thief', ['blog.localhost'])]));
    expect(appOf(table.lookup('blog.localhost'))).toBe('blog');
  });

  it('routes only ready, live instances with a port, round-robin', () => {
    const table = new RouteTable({ domain: 'localhost' });
    table.load(snapshot([app('blog')], [
      instance('i1', 'blog'),
      instance('i2', 'blog'),
      instance('i3', 'blog', { state: 'starting' }),
      instance('i4', 'blog', { isLive: false, release: 2 }),
      instance('i5', 'blog', { port: null }),
      instance('i6', 'blog', { state: 'stopping' }),
    ]));
    const lookup = table.lookup('blog.localhost');
    if (lookup.kind !== 'app') throw new Error('expected a route');
    expect(lookup.route.backends.map((b) => b.id)).toEqual(['i1', 'i2']);
    const picks = [1, 2, 3, 4].map(() => table.pick(lookup.route)!.id);
    expect(picks).toEqual(['i1', 'i2', 'i1', 'i2']);
    expect(table.pick(lookup.route, lookup.route.backends[0])!.id).toBe('i2');
    expect(table.addresses()).toEqual(new Set(['127.0.0.1:20001', '127.0.0.1:20002']));
  });

  it('skips unusable backends but falls back to one rather than none, and never to the excluded one', () => {
    const table = new RouteTable({ domain: 'localhost' });
    table.load(snapshot([app('blog')], [instance('i1', 'blog'), instance('i2', 'blog')]));
    const route = table.route('blog')!;
    const [b1, b2] = route.backends;
    expect(table.pick(route, undefined, (b) => b !== b1)).toBe(b2);
    expect(table.pick(route, undefined, (b) => b !== b1)).toBe(b2);
    expect(table.pick(route, undefined, () => false)).toBeDefined();
    expect(table.pick(route, b1, (b) => b !== b2)).toBe(b2);
    table.apply(event('instance.removed', 'blog', { id: 'i2' }));
    expect(table.pick(route, b1)).toBeUndefined();
  });

  it('applies app, host and instance events in place', () => {
    const table = new RouteTable({ domain: 'localhost' });
    table.load(snapshot([]));
    expect(table.apply(event('app.created', 'blog', { owner: 'admin' }))).toBe(true);
    expect(appOf(table.lookup('blog.localhost'))).toBe('blog');
    table.apply(event('host.added', 'blog', { hostname: 'www.blog.org' }));
    table.apply(event('host.added', 'blog', { hostname: '*.blog.com' }));
    expect(appOf(table.lookup('www.blog.org'))).toBe('blog');
    expect(appOf(table.lookup('x.blog.com'))).toBe('blog');
    expect(table.route('blog')!.backends).toHaveLength(0);

    table.apply(event('instance.changed', 'blog', instance('i1', 'blog', { state: 'starting', isLive: false })));
    expect(table.route('blog')!.backends).toHaveLength(0);
    table.apply(event('instance.changed', 'blog', instance('i1', 'blog', { state: 'ready', isLive: false })));
    expect(table.route('blog')!.backends).toHaveLength(0);
    table.apply(event('release.live', 'blog', { release: 1 }));
    expect(table.route('blog')!.backends.map((b) => b.address)).toEqual(['127.0.0.1:20001']);

    // A deploy: v2 becomes ready beside v1, then goes live; v1 stops routing at once.
    table.apply(event('instance.changed', 'blog', instance('i2', 'blog', { release: 2, isLive: false })));
    expect(table.route('blog')!.backends.map((b) => b.id)).toEqual(['i1']);
    table.apply(event('release.live', 'blog', { release: 2 }));
    expect(table.route('blog')!.backends.map((b) => b.id)).toEqual(['i2']);
    table.apply(event('instance.removed', 'blog', { id: 'i1' }));
    table.apply(event('instance.removed', 'blog', { id: 'i2' }));
    expect(table.route('blog')!.backends).toHaveLength(0);

    table.apply(event('host.removed', 'blog', { hostname: 'www.blog.org' }));
    expect(table.lookup('www.blog.org').kind).toBe('unknown');
    expect(appOf(table.lookup('x.blog.com'))).toBe('blog');
    table.apply(event('host.removed', 'blog', { hostname: '*.blog.com' }));
    expect(table.lookup('x.blog.com').kind).toBe('unknown');

    table.apply(event('app.destroyed', 'blog'));
    expect(table.lookup('blog.localhost').kind).toBe('unknown');
    expect(table.size).toBe(0);
    expect(table.version).toBe(version);
  });

  it('drops an app\'s hostnames and backends when it is destroyed', () => {
    const table = new RouteTable({ domain: 'localhost' });
    table.load(snapshot([app('blog', ['blog.com', '*.blog.com'])], [instance('i1', 'blog')]));
    table.apply(event('app.destroyed', 'blog'));
    for (const host of ['blog.com', 'a.blog.com', 'blog.localhost']) expect(table.lookup(host).kind).toBe('unknown');
    expect(table.addresses().size).toBe(0);
  });

  it('ignores events that do not change routes and counts malformed ones', () => {
    const table = new RouteTable({ domain: 'localhost' });
    table.load(snapshot([app('blog')]));
    expect(table.apply(event('node.registered', null, { nodeId: 'runner-1', kind: 'runner', address: 'x' }))).toBe(false);
    expect(table.apply(event('config.changed', 'blog', { keys: ['A'] }))).toBe(false);
    expect(table.apply(event('instance.changed', 'blog', { id: 'x' }))).toBe(false);
    expect(table.apply(event('host.added', 'blog', {}))).toBe(false);
    expect(table.invalidEvents).toBe(2);
  });

  it('replaces everything on a new snapshot', () => {
    const table = new RouteTable({ domain: 'localhost' });
    table.load(snapshot([app('blog', ['blog.com'])], [instance('i1', 'blog')]));
    table.load(snapshot([app('shop')], [], 20));
    expect(table.lookup('blog.com').kind).toBe('unknown');
    expect(table.lookup('blog.localhost').kind).toBe('unknown');
    expect(appOf(table.lookup('shop.localhost'))).toBe('shop');
    expect(table.version).toBe(20);
  });
});
