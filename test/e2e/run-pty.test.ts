/**
 * `pier run` under a real terminal: the CLI runs inside a tmux pane (its own tmux server per test), so its stdin is
 * a TTY; the one-off gets a PTY on the runner of the pane's size, typed input reaches it, Ctrl-C interrupts it,
 * Ctrl-D ends it, and a resize of the pane reaches `stty size`. The release carries modules named like the ones the
 * PTY helper uses (pty, select, termios, json): the helper never imports them. App names start with `rn`.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { CLI } from '../helpers/cli.js';
import { platformForFile } from '../helpers/platform.js';
import { waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const apps: string[] = [];
const p = platformForFile({ apps, prefix: 'rn' });
const servers: string[] = [];

afterEach(() => {
  for (const server of servers.splice(0)) {
    try {
      execFileSync('tmux', ['-S', server, 'kill-server'], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
});

/** A tmux server of its own running `pier run -a APP -- ARGS` in one pane; `EXIT=N` is printed when it ends. */
function terminal(app: string, args: string[]) {
  // Its socket in the test's folder (a `-L` name's socket would stay in /tmp/tmux-UID after kill-server).
  const server = join(p.dir, `rn-${randomId()}.tmux`);
  servers.push(server);
  const quoted = args.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const command = `PIER_API_URL=${p.nexus.api} PIER_TOKEN=${p.tokens.owner} TERM=xterm ${process.execPath} ${CLI} run -a ${app} -- ${quoted}; echo EXIT=$?; sleep 60`;
  const tmux = (...a: string[]): string => execFileSync('tmux', ['-S', server, ...a]).toString();
  tmux('-f', '/dev/null', 'new-session', '-d', '-s', 'rn', '-x', '100', '-y', '30', command);
  tmux('set-option', '-t', 'rn', 'status', 'off');
  return {
    screen: () => tmux('capture-pane', '-p', '-t', 'rn', '-S', '-200'),
    keys: (...keys: string[]) => tmux('send-keys', '-t', 'rn', ...keys),
    resize: (cols: number, rows: number) => tmux('resize-window', '-t', 'rn', '-x', String(cols), '-y', String(rows)),
    size: () => tmux('display-message', '-p', '-t', 'rn', '#{pane_height} #{pane_width}').trim(),
    waitFor: (text: string | RegExp, name: string) =>
      waitFor(() => {
        const screen = tmux('capture-pane', '-p', '-t', 'rn', '-S', '-200');
        return (typeof text === 'string' ? screen.includes(text) : text.test(screen)) || undefined;
      }, { name, timeoutMs: 20_000, intervalMs: 100 }).catch((err: Error) => {
        throw new Error(`${err.message}; the screen:\n${tmux('capture-pane', '-p', '-t', 'rn', '-S', '-200').trimEnd()}`);
      }),
  };
}

const HIJACK = (marker: string) => `open(${JSON.stringify(marker)}, "w").write("imported")\nprint("HIJACKED")\n`;

describe.runIf(isRoot)('pier run with a terminal', () => {
  it('answers typed input, delivers Ctrl-C and Ctrl-D, and never imports the modules the release plants', async () => {
    const app = `rn-pty-${randomId(2)}`;
    apps.push(app);
    expect((await p.api('POST', '/v1/apps', { name: app })).status).toBe(201);
    const marker = join(p.dir, `${app}-hijack`);
    const files: Record<string, string> = { 'wsgi.py': 'def application(e, s):\n    s("200 OK", [])\n    return [b"ok"]\n' };
    for (const name of ['pty', 'select', 'termios', 'json', 'fcntl', 'struct', 'sitecustomize']) files[`${name}.py`] = HIJACK(marker);
    expect((await p.deploy(app, p.writeApp(app, files))).status).toBe('live');

    const t = terminal(app, ['python', '-q', '-i', '-c', 'import sys, os; print("tty", os.isatty(0), os.isatty(1))']);
    await t.waitFor('tty True True', 'the REPL started on a terminal');
    await t.waitFor(/^>>>/m, 'the prompt');
    t.keys('print(6 * 7)', 'Enter');
    await t.waitFor(/^42$/m, 'the answer to typed input');
    t.keys('import time; time.sleep(30)', 'Enter');
    await new Promise((resolve) => setTimeout(resolve, 300));
    t.keys('C-c');
    await t.waitFor('KeyboardInterrupt', 'Ctrl-C reached the remote process');
    t.keys('print("still", "here")', 'Enter'); // (a REPL whose last line raised exits 130 at EOF)
    await t.waitFor('still here', 'the REPL lived on after Ctrl-C');
    t.keys('C-d');
    await t.waitFor('EXIT=0', 'Ctrl-D ended the REPL and the CLI exited 0');
    expect(t.screen()).not.toContain('HIJACKED');
    expect(existsSync(marker)).toBe(false);
  }, 60_000);

  it("shows the local window size to stty and follows a resize", async () => {
    const app = `rn-size-${randomId(2)}`;
    apps.push(app);
    expect((await p.api('POST', '/v1/apps', { name: app })).status).toBe(201);
    expect((await p.deploy(app, p.writeApp(app, { 'wsgi.py': 'def application(e, s):\n    s("200 OK", [])\n    return [b"ok"]\n' }))).status).toBe('live');
    const t = terminal(app, ['sh']);
    await t.waitFor(/^\$/m, 'the shell prompt');
    t.keys('stty size; echo done-1', 'Enter');
    const first = t.size(); // rows cols of the pane the CLI runs in
    await t.waitFor(new RegExp(`^${first}$[\\s\\S]*done-1`, 'm'), `stty size showed ${first}`);
    t.resize(120, 40);
    await waitFor(() => t.size() !== first || undefined, { name: 'the pane resized', timeoutMs: 5000 });
    const second = t.size();
    await new Promise((resolve) => setTimeout(resolve, 300)); // SIGWINCH → resize frame → TIOCSWINSZ
    t.keys('stty size; echo done-2', 'Enter');
    await t.waitFor(new RegExp(`^${second}$[\\s\\S]*done-2`, 'm'), `stty size showed ${second} after the resize`);
    t.keys('exit 7', 'Enter');
    await t.waitFor('EXIT=7', 'the shell exit status came back');
  }, 60_000);
});
