/**
 * Relays one attached one-off between the client's upgraded HTTP connection (length-prefixed frames,
 * protocol/sessions.ts) and its runner (through the nexus's sessions hub). The nexus holds at most a window each
 * way: output credit the client grants is passed on only while the client's socket has room, and a client sending
 * more input than the runner acknowledged is cut off.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import {
  FRAME, FrameReader, INPUT_WINDOW_BYTES, OUTPUT_WINDOW_BYTES, SESSION_CHUNK_BYTES, creditFrame, encodeFrame, type OneOffSpec, type SessionSignal,
} from '../protocol/index.js';
import type { SessionsPort } from './context.js';

const PING_MS = 2000;
const SIGNALS = new Set<SessionSignal>(['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT']);

export function relaySession(socket: Duplex, hub: SessionsPort, session: string, runnerId: string, spec: OneOffSpec, log: Logger): void {
  const reader = new FrameReader();
  let inFlight = 0;
  let heldCredit = 0;
  let isDone = false;
  const write = (frame: Buffer): void => {
    if (!socket.destroyed) socket.write(frame);
  };
  // The client's socket buffer is the nexus's only buffer: credit waits while it is over the window.
  const passCredit = (): void => {
    if (heldCredit > 0 && socket.writableLength < OUTPUT_WINDOW_BYTES) {
      hub.send(session, { v: 1, type: 'session.credit', session, bytes: heldCredit });
      heldCredit = 0;
    }
  };
  socket.on('drain', passCredit);
  const finish = (exit: { code: number | null; signal: string | null; error?: string; isLost?: boolean }): void => {
    if (isDone) return;
    isDone = true;
    clearInterval(ping);
    const errorCode = exit.error === undefined ? undefined : exit.isLost ? 'PIER_NO_RUNNER' : exit.code === null ? 'PIER_VALIDATION' : undefined;
    write(encodeFrame(FRAME.EXIT, Buffer.from(JSON.stringify({ ...exit, ...(errorCode ? { errorCode } : {}) }))));
    socket.end();
  };
  const fail = (message: string): void => {
    hub.detachClient(session);
    finish({ code: null, signal: null, error: message });
  };
  const ping = setInterval(() => write(encodeFrame(FRAME.PING)), PING_MS);
  hub.launch(session, runnerId, spec, {
    onStarted: () => undefined,
    onOutput: (stream, data) => write(encodeFrame(stream === 1 ? FRAME.STDOUT : FRAME.STDERR, data)),
    onInputCredit: (bytes) => {
      inFlight = Math.max(0, inFlight - bytes);
      write(creditFrame(bytes));
    },
    onExit: finish,
  });
  socket.on('data', (chunk: Buffer) => {
    let frames;
    try {
      frames = reader.push(chunk);
    } catch (err) {
      return fail((err as Error).message);
    }
    for (const { type, payload } of frames) {
      if (isDone) return;
      if (type === FRAME.IN) {
        inFlight += payload.byteLength;
        if (payload.byteLength > SESSION_CHUNK_BYTES || inFlight > INPUT_WINDOW_BYTES) return fail(`the client sent more input than the runner took (window ${INPUT_WINDOW_BYTES} bytes)`);
        hub.send(session, { v: 1, type: 'session.in', session, data: Buffer.from(payload) });
      } else if (type === FRAME.EOF) hub.send(session, { v: 1, type: 'session.eof', session });
      else if (type === FRAME.RESIZE && payload.byteLength === 4) {
        const rows = payload.readUInt16BE(0);
        const cols = payload.readUInt16BE(2);
        if (rows >= 1 && rows <= 1000 && cols >= 1 && cols <= 1000) hub.send(session, { v: 1, type: 'session.resize', session, rows, cols });
      } else if (type === FRAME.SIGNAL) {
        const name = payload.toString('latin1') as SessionSignal;
        if (SIGNALS.has(name)) hub.send(session, { v: 1, type: 'session.signal', session, signal: name });
      } else if (type === FRAME.CREDIT && payload.byteLength === 4) {
        heldCredit += payload.readUInt32BE(0);
        passCredit();
      } else return fail(`unknown session frame type ${type}`);
    }
  });
  const gone = (): void => {
    if (isDone) return;
    isDone = true;
    clearInterval(ping);
    log.info({ session, dyno: spec.dyno }, 'one-off client went away; hanging up');
    hub.detachClient(session);
  };
  socket.on('close', gone);
  socket.on('error', gone);
}
