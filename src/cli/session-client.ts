/**
 * The CLI end of an attached one-off: opens `GET …/dynos/run.N/attach` with `Upgrade: pier-session` on the first
 * API that takes it, then relays this process's stdin/stdout/stderr as frames (protocol/sessions.ts). With a
 * terminal, stdin is put in raw mode (Ctrl-C, Ctrl-D and every key go to the remote PTY as bytes) and window-size
 * changes are sent; without one, SIGINT/SIGTERM are forwarded as signals and the end of stdin as EOF. Output is
 * acknowledged only once written, and input is sent only against the runner's credit.
 */
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { PierError, exitCodeFor, isErrorCode } from '../core/errors.js';
import {
  FRAME, FrameReader, INPUT_WINDOW_BYTES, SESSION_CHUNK_BYTES, SESSION_UPGRADE, creditFrame, encodeFrame, resizeFrame,
} from '../protocol/session-frames.js';

/** Silence from the nexus (it pings every 2 s) after which the session counts as lost. */
const SILENCE_MS = 10_000;

export interface AttachOptions {
  apiUrls: readonly string[];
  token: string;
  path: string;
  isTty: boolean;
  /** Written to stderr when the session ends badly (one line). */
  onErrorLine: (line: string) => void;
}

/** Attaches and relays until the one-off ends; resolves with the exit code the CLI should end with. */
export async function attachSession(options: AttachOptions): Promise<number> {
  const socket = await openUpgrade(options);
  return relay(socket, options);
}

async function openUpgrade(options: AttachOptions): Promise<Socket> {
  const failures: string[] = [];
  for (const base of options.apiUrls) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const url = new URL(`${base.replace(/\/+$/, '')}${options.path}`);
        const req = request(url, {
          method: 'GET', headers: { connection: 'Upgrade', upgrade: SESSION_UPGRADE, authorization: `Bearer ${options.token}` }, timeout: 5000,
        });
        req.once('upgrade', (_res, socket, head) => {
          // The request's connect time-out stays on the socket: a session may be quiet for long (pings watch it).
          socket.setTimeout(0);
          req.removeAllListeners('timeout');
          if (head.length > 0) socket.unshift(head);
          resolve(socket);
        });
        req.once('response', (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString('utf8')));
          res.on('end', () => {
            let error: { code?: string; message?: string } | undefined;
            try {
              error = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
            } catch {
              error = undefined;
            }
            const e = new PierError(isErrorCode(error?.code) ? error.code : 'PIER_INTERNAL', error?.message ?? `HTTP ${res.statusCode}`);
            (e as PierError & { isAnswer?: boolean }).isAnswer = res.statusCode !== 503 && res.statusCode !== 502;
            reject(e);
          });
        });
        req.once('timeout', () => req.destroy(new Error('no answer in time')));
        req.once('error', reject);
        req.end();
      });
    } catch (err) {
      if ((err as { isAnswer?: boolean }).isAnswer) throw err;
      failures.push(`${base}: ${(err as Error).message}`);
      if (err instanceof PierError && options.apiUrls.length === 1) throw err;
    }
  }
  throw new PierError('PIER_NEXUS_UNAVAILABLE', `no API took the session (${failures.join('; ')}); is the platform running? try 'pier status'`);
}

function relay(socket: Socket, options: AttachOptions): Promise<number> {
  socket.setNoDelay(true);
  const stdin = process.stdin;
  const reader = new FrameReader();
  let credit = INPUT_WINDOW_BYTES;
  let isStdinDone = false;
  let isEofSent = false;
  let lastHeardAt = Date.now();
  let isExitSeen = false;
  const send = (frame: Buffer): void => {
    if (!socket.destroyed) socket.write(frame);
  };
  return new Promise<number>((resolve) => {
    let isDone = false;
    const cleanups: Array<() => void> = [];
    const finish = (code: number, line?: string): void => {
      if (isDone) return;
      isDone = true;
      for (const cleanup of cleanups) cleanup();
      if (line) options.onErrorLine(line);
      socket.destroy();
      resolve(code);
    };

    if (options.isTty && stdin.isTTY) {
      stdin.setRawMode(true);
      cleanups.push(() => stdin.setRawMode(false));
      const onResize = (): void => send(resizeFrame(Math.max(1, process.stdout.rows || 24), Math.max(1, process.stdout.columns || 80)));
      process.on('SIGWINCH', onResize);
      cleanups.push(() => process.off('SIGWINCH', onResize));
    } else {
      for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) {
        const forward = (): void => send(encodeFrame(FRAME.SIGNAL, Buffer.from(signal, 'latin1')));
        process.on(signal, forward);
        cleanups.push(() => process.off(signal, forward));
      }
    }
    // Input beyond the runner's credit waits here (stdin is paused meanwhile), so the nexus never holds more.
    let held: Buffer = Buffer.alloc(0);
    const flushInput = (): void => {
      while (held.length > 0 && credit > 0) {
        const piece = held.subarray(0, Math.min(SESSION_CHUNK_BYTES, credit));
        held = held.subarray(piece.length);
        credit -= piece.length;
        send(encodeFrame(FRAME.IN, piece));
      }
      if (held.length > 0) stdin.pause();
      else if (isStdinDone && !isEofSent) {
        isEofSent = true;
        send(encodeFrame(FRAME.EOF));
      } else if (!isStdinDone) stdin.resume();
    };
    const onData = (chunk: Buffer): void => {
      held = held.length === 0 ? chunk : Buffer.concat([held, chunk]);
      flushInput();
    };
    const onEnd = (): void => {
      isStdinDone = true;
      flushInput();
    };
    stdin.on('data', onData);
    stdin.once('end', onEnd);
    stdin.on('error', onEnd);
    cleanups.push(() => {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      stdin.pause();
      stdin.destroy();
    });

    const watchdog = setInterval(() => {
      if (Date.now() - lastHeardAt > SILENCE_MS) finish(1, `error: the nexus stopped answering mid-session (nothing for ${SILENCE_MS / 1000} s); the one-off was hung up (PIER_NEXUS_UNAVAILABLE)`);
    }, 1000);
    cleanups.push(() => clearInterval(watchdog));

    socket.on('data', (chunk: Buffer) => {
      lastHeardAt = Date.now();
      let frames;
      try {
        frames = reader.push(chunk);
      } catch (err) {
        return finish(1, `error: ${(err as Error).message} (PIER_PROTOCOL)`);
      }
      for (const { type, payload } of frames) {
        if (type === FRAME.STDOUT || type === FRAME.STDERR) {
          const out = type === FRAME.STDOUT ? process.stdout : process.stderr;
          const bytes = payload.length;
          out.write(payload, () => send(creditFrame(bytes)));
        } else if (type === FRAME.CREDIT && payload.length === 4) {
          credit += payload.readUInt32BE(0);
          flushInput();
        } else if (type === FRAME.EXIT) {
          isExitSeen = true; // the nexus closes right after the exit frame: that close is not a lost connection
          const exit = JSON.parse(payload.toString('utf8')) as { code: number | null; signal: string | null; error?: string; errorCode?: string };
          // Whatever is still being written reaches the terminal before the exit.
          const done = (): void => {
            if (exit.error && exit.code !== null) return finish(exit.code, `pier run: ${exit.error}`);
            if (exit.error) return finish(exitCodeFor(exit.errorCode ?? 'PIER_INTERNAL'), `error: ${exit.error} (${exit.errorCode ?? 'PIER_INTERNAL'})`);
            finish(exit.code ?? 1);
          };
          process.stdout.write('', () => process.stderr.write('', done));
          return;
        }
      }
    });
    socket.once('close', () => {
      if (!isExitSeen) finish(1, 'error: the connection to the nexus was lost mid-session; the one-off was hung up (PIER_NEXUS_UNAVAILABLE)');
    });
    socket.on('error', () => undefined); // 'close' follows and says it
    if (options.isTty && stdin.isTTY) send(resizeFrame(Math.max(1, process.stdout.rows || 24), Math.max(1, process.stdout.columns || 80)));
  });
}
