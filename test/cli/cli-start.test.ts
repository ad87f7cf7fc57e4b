/**
 * The CLI starts fast: main.ts loads only the invoked command's module (command-table.ts), `pier run`'s path loads
 * no TypeBox, undici, msgpackr or daemon code, and `pier --help` still lists every command. The API client
 * (node:http) keeps its replica failover and wording.
 */
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/cli/client.js';
import { COMMAND_MODULES, modulesFor } from '../../src/cli/command-table.js';
import { CliContext } from '../../src/cli/context.js';
import { CLI, runCli } from '../helpers/cli.js';

const TRACE = fileURLToPath(new URL('../fixtures/trace-imports.mjs', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'pier-fa-start-'));
const servers: Server[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  rmSync(dir, { recursive: true, force: true });
});

function serve(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

/** Names registered by `modules`, in order. */
async function registered(modules: readonly (typeof COMMAND_MODULES)[number][]): Promise<string[]> {
  const program = new Command('pier');
  const ctx = new CliContext({});
  for (const m of modules) (await m.load())(program, ctx);
  return program.commands.map((c) => c.name());
}

describe('the command table', () => {
  it('names exactly what each module registers, with no name in two modules', async () => {
    const all: string[] = [];
    for (const m of COMMAND_MODULES) {
      expect(await registered([m])).toEqual(m.commands);
      all.push(...m.commands);
    }
    expect(new Set(all).size).toBe(all.length);
    expect(await registered(COMMAND_MODULES)).toEqual(all);
  });

  it('loads one module for a known command and all of them for help, options first or an unknown name', () => {
    expect(modulesFor(['run', '-a', 'x', '--', 'echo']).map((m) => m.commands[0])).toEqual(['run']);
    expect(modulesFor(['--debug', 'ps:stop', 'run.1']).map((m) => m.commands[0])).toEqual(['run']);
    expect(modulesFor(['stats', '-a', 'x'])).toHaveLength(1);
    for (const args of [[], ['--help'], ['-h'], ['help', 'run'], ['--debug'], ['rn'], ['--debug', '--help', 'run']]) expect(modulesFor(args)).toBe(COMMAND_MODULES);
  });

  it('pier --help and pier help still list every command', async () => {
    for (const args of [['--help'], ['help']]) {
      const { code, stdout } = await runCli(args);
      expect(code).toBe(0);
      for (const m of COMMAND_MODULES) for (const name of m.commands) expect(stdout).toMatch(new RegExp(`^  ${name.replace(/[:]/g, '\\:')}\\b`, 'm'));
    }
  });

  it('an unknown command still gets a suggestion from every command', async () => {
    const { code, stderr } = await runCli(['ps:stp']);
    expect(code).toBe(64);
    expect(stderr).toContain("(Did you mean ps:stop?)");
  });
});

/** Runs the built CLI with every loaded module's URL traced; resolves with its stderr, exit code and the URLs. */
async function traced(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string; loaded: string[] }> {
  const file = join(dir, `trace-${Math.random().toString(36).slice(2)}.txt`);
  const { code, stderr } = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(process.execPath, ['--import', TRACE, CLI, ...args], {
      env: { PATH: process.env.PATH, HOME: dir, PIER_TEST_TRACE_FILE: file, ...env },
    }, (err, _stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stderr }));
  });
  return { code, stderr, loaded: readFileSync(file, 'utf8').trim().split('\n') };
}

/** The npm packages among `loaded`. */
function packagesOf(loaded: string[]): string[] {
  return [...new Set(loaded.filter((u) => u.includes('/node_modules/')).map((u) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u)![1]!))];
}

describe("the CLI's start-up", () => {
  it('pier run loads commander and the run path only: no TypeBox, undici, msgpackr, zeromq, pg, pino or daemon code', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'PIER_NOT_FOUND', message: "app 'fa-start' does not exist" } }));
    });
    const { code, stderr, loaded } = await traced(['run', '-a', 'fa-start', '--', 'echo', 'hi'], { PIER_API_URL: url, PIER_TOKEN: 't' });
    expect(stderr).toBe("error: app 'fa-start' does not exist (PIER_NOT_FOUND)\n");
    expect(code).toBe(66);
    expect(loaded.some((u) => u.endsWith('/dist/cli/commands/run.js'))).toBe(true); // the trace sees the CLI's modules
    expect(packagesOf(loaded)).toEqual(['commander']);
    const ours = loaded.filter((u) => u.includes('/dist/')).map((u) => u.replace(/^.*\/dist\//, ''));
    expect(ours.filter((m) => !/^(cli\/|core\/errors\.js$|config\/paths\.js$|protocol\/(patterns|session-frames)\.js$)/.test(m))).toEqual([]);
    expect(ours).not.toContain('cli/commands/platform.js');
  });

  it('pier --help loads every command module and still no TypeBox, undici, pino or daemon code', async () => {
    const { code, loaded } = await traced(['--help'], {});
    expect(code).toBe(0);
    for (const name of ['platform', 'apps', 'limits', 'health', 'logs', 'explain', 'run']) expect(loaded.some((u) => u.endsWith(`/dist/cli/commands/${name}.js`))).toBe(true);
    expect(packagesOf(loaded)).toEqual(['commander']);
  });
});

describe('the API client on node:http', () => {
  it('skips a refused replica and a 503 one, and sends the token, JSON and an idempotency key', async () => {
    let seen: { auth?: string; key?: string; type?: string; body?: string } = {};
    const busy = await serve((_req, res) => {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'PIER_NEXUS_UNAVAILABLE', message: 'not the leader' } }));
    });
    const good = await serve((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen = { auth: req.headers.authorization, key: req.headers['idempotency-key'] as string, type: req.headers['content-type'], body };
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: 'ünï' }));
      });
    });
    const client = new ApiClient({ apiUrls: ['http://127.0.0.1:1', busy, good], token: 'tok' });
    expect(await client.post('/v1/x', { a: 1 })).toEqual({ ok: 'ünï' });
    expect(seen).toMatchObject({ auth: 'Bearer tok', type: 'application/json', body: '{"a":1}' });
    expect(seen.key).toMatch(/^[0-9a-f-]{36}$/);
    await client.close();
  });

  it('says what each replica did when none answers, and turns an error body into its PierError', async () => {
    const silent = await serve(() => undefined); // takes the request, never answers
    const client = new ApiClient({ apiUrls: ['http://127.0.0.1:1', silent], token: 't' }, { responseTimeoutMs: 300 });
    await expect(client.get('/v1/status')).rejects.toThrow(`no API answered (http://127.0.0.1:1: connection refused; ${silent}: no response in time); is the platform running? try 'pier status'`);
    await client.close();
    const refusing = await serve((_req, res) => {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'PIER_FORBIDDEN', message: 'not yours' } }));
    });
    const other = new ApiClient({ apiUrls: [refusing], token: 't' });
    await expect(other.get('/v1/apps/x')).rejects.toMatchObject({ code: 'PIER_FORBIDDEN', message: 'not yours' });
    await other.close();
  });

  it('streams text until the server ends it', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('one\n');
      setTimeout(() => res.end('two\n'), 400); // longer than the response time-out: a stream has none
    });
    const client = new ApiClient({ apiUrls: [url], token: 't' }, { responseTimeoutMs: 200 });
    let text = '';
    await client.stream('/v1/apps/x/logs?follow=1', (t) => (text += t));
    expect(text).toBe('one\ntwo\n');
    await client.close();
  });
});
