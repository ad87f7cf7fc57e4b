/**
 * The binary frames the CLI and the nexus exchange over the upgraded HTTP connection of a one-off session, and the
 * session window sizes. Plain code without TypeBox: `pier run` loads it at start-up (sessions.ts re-exports it).
 */
import { ProtocolError } from '../core/errors.js';

/** Largest piece of stdin/stdout/stderr in one message or frame. */
export const SESSION_CHUNK_BYTES = 64 * 1024;
/** Output bytes a runner may send before the client grants more. */
export const OUTPUT_WINDOW_BYTES = 1024 * 1024;
/** Input bytes a client may send before the runner grants more. */
export const INPUT_WINDOW_BYTES = 256 * 1024;

// ---- CLI <-> nexus frames: [u32 length of type+payload][u8 type][payload] ----

/** Frame types. Client → nexus: IN, EOF, RESIZE, SIGNAL, CREDIT. Nexus → client: STDOUT, STDERR, CREDIT, EXIT, PING. */
export const FRAME = {
  IN: 0x69, // 'i' stdin bytes
  EOF: 0x65, // 'e' stdin ended
  RESIZE: 0x77, // 'w' u16 rows, u16 cols
  SIGNAL: 0x6b, // 'k' signal name (ascii)
  CREDIT: 0x63, // 'c' u32 bytes (output consumed by the client; input taken by the process)
  STDOUT: 0x31, // '1'
  STDERR: 0x32, // '2'
  /** JSON {code, signal, error?, errorCode?}: the end of the session. */
  EXIT: 0x78, // 'x'
  /** Keep-alive from the nexus; a client hearing nothing for long ends the session. */
  PING: 0x70, // 'p'
} as const;
export const MAX_FRAME_BYTES = SESSION_CHUNK_BYTES + 1024;
/** Upgrade token of the session stream. */
export const SESSION_UPGRADE = 'pier-session';

export function encodeFrame(type: number, payload: Uint8Array = Buffer.alloc(0)): Buffer<ArrayBufferLike> {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.byteLength + 1, 0);
  head[4] = type;
  return Buffer.concat([head, payload]);
}

export function creditFrame(bytes: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(bytes, 0);
  return encodeFrame(FRAME.CREDIT, payload);
}

export function resizeFrame(rows: number, cols: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt16BE(rows, 0);
  payload.writeUInt16BE(cols, 2);
  return encodeFrame(FRAME.RESIZE, payload);
}

/** Splits a byte stream into frames; throws ProtocolError on a frame over MAX_FRAME_BYTES or of length 0. */
export class FrameReader {
  private buffer: Buffer<ArrayBufferLike> = Buffer.alloc(0);

  push(chunk: Buffer<ArrayBufferLike>): Array<{ type: number; payload: Buffer<ArrayBufferLike> }> {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const frames: Array<{ type: number; payload: Buffer<ArrayBufferLike> }> = [];
    while (this.buffer.length >= 4) {
      const length = this.buffer.readUInt32BE(0);
      if (length === 0 || length > MAX_FRAME_BYTES) throw new ProtocolError(`session frame of ${length} bytes (at most ${MAX_FRAME_BYTES})`);
      if (this.buffer.length < 4 + length) break;
      frames.push({ type: this.buffer[4]!, payload: this.buffer.subarray(5, 4 + length) });
      this.buffer = this.buffer.subarray(4 + length);
    }
    return frames;
  }
}
