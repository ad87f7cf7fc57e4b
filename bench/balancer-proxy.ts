/**
 * Child process of bench/balancer.ts: Pier's proxy (ProxyServer over a RouteTable filled by hand, default
 * balancer settings, access records pushed to a stats PULL socket when one is given), routing `bench.localhost`
 * to one backend. Usage: node --import tsx bench/balancer-proxy.ts PORT BACKEND_HOST:PORT[@CAPACITY] [STATS_ENDPOINT]
 * CAPACITY is what a runner reports for the instance (processes × threads): the balancer then keeps fewer
 * connections to it than it has threads, as in production (a uWSGI thread holds a kept-alive connection).
 */
import { AccessLog } from '../src/balancer/access-log.js';
import { RouteTable } from '../src/balancer/route-table.js';
import { ProxyServer } from '../src/balancer/server.js';
import { loadConfig } from '../src/config/index.js';
import { silentLogger } from '../src/core/logger.js';
import { SocketFactory } from '../src/transport/index.js';

const [portArg, backendArg, statsEndpoint] = process.argv.slice(2);
const [backendAddress, capacityArg] = (backendArg ?? '').split('@');
const [backendHost, backendPort] = (backendAddress ?? '').split(':');
// Balancer settings are the defaults, overridable like the daemon's (PIER_BALANCER_MAX_CONNECTIONS_PER_BACKEND=4 …).
const settings = loadConfig({ env: process.env, overrides: { dataDir: '/tmp' } }).balancer;
const log = silentLogger();

const table = new RouteTable({ domain: 'localhost' });
table.load({
  version: 1,
  apps: [{ name: 'bench', owner: 'bench', webScale: 1, hostnames: [], createdAt: 0 }],
  nodes: [],
  instances: [{ id: 'bench-1', app: 'bench', release: 1, isLive: true, processType: 'web', runnerId: 'runner-1', host: backendHost!, port: Number(backendPort), state: 'ready', ...(capacityArg ? { capacity: Number(capacityArg) } : {}) }],
});
const accessLog = new AccessLog({
  endpoints: statsEndpoint ? [statsEndpoint] : [], sockets: new SocketFactory({ maxMessageBytes: 4 * 1024 * 1024 }), balancerId: 'bench', maxQueue: settings.accessQueueMax, log,
});
accessLog.start();
const server = new ProxyServer({ table, settings, log, onAccess: accessLog.record });
const port = await server.listen('127.0.0.1', Number(portArg));
process.stdout.write(`ready ${port}\n`);

process.once('SIGTERM', () => {
  void (async () => {
    await server.drain(500);
    await server.close();
    await accessLog.stop();
    process.stdout.write(`access records sent=${accessLog.stats.sent} dropped=${accessLog.stats.dropped}\n`);
    process.exit(0);
  })();
});
