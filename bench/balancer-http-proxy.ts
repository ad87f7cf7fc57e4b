/**
 * Child process of bench/balancer.ts: a plain http-proxy (http-proxy-3 with a keep-alive http.Agent), the baseline
 * the balancer's goal is measured against. Usage: node --import tsx bench/balancer-http-proxy.ts PORT BACKEND_HOST:PORT
 */
import { Agent, createServer } from 'node:http';
import { createProxyServer } from 'http-proxy-3';

const [portArg, backend] = process.argv.slice(2);
const agent = new Agent({ keepAlive: true, maxSockets: 256 });
const proxy = createProxyServer({ target: `http://${backend}`, agent, xfwd: true });
proxy.on('error', (err, req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502);
  res.end();
});
const server = createServer((req, res) => proxy.web(req, res));
server.listen(Number(portArg), '127.0.0.1', () => process.stdout.write(`ready ${(server.address() as { port: number }).port}\n`));
process.once('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
