/** The one-off session wire formats: CLI↔nexus frames (split anywhere, bounded) and nexus↔runner messages (validated). */
import { describe, expect, it } from 'vitest';
import {
  FRAME, FrameReader, MAX_FRAME_BYTES, creditFrame, decodeToNexus, decodeToRunner, encode, encodeFrame, resizeFrame,
} from '../../src/protocol/index.js';

describe('protocol/sessions', () => {
  it('reads frames split at every byte boundary', () => {
    const stream = Buffer.concat([encodeFrame(FRAME.STDOUT, Buffer.from('hello')), creditFrame(70_000), resizeFrame(40, 120), encodeFrame(FRAME.EOF)]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const reader = new FrameReader();
      const frames = [...reader.push(stream.subarray(0, cut)), ...reader.push(stream.subarray(cut))];
      expect(frames.map((f) => f.type)).toEqual([FRAME.STDOUT, FRAME.CREDIT, FRAME.RESIZE, FRAME.EOF]);
      expect(frames[0]!.payload.toString()).toBe('hello');
      expect(frames[1]!.payload.readUInt32BE(0)).toBe(70_000);
      expect([frames[2]!.payload.readUInt16BE(0), frames[2]!.payload.readUInt16BE(2)]).toEqual([40, 120]);
    }
  });

  it('refuses a frame longer than the limit or of length zero, before reading its body', () => {
    const head = Buffer.alloc(4);
    head.writeUInt32BE(MAX_FRAME_BYTES + 1, 0);
    expect(() => new FrameReader().push(head)).toThrow(`session frame of ${MAX_FRAME_BYTES + 1} bytes (at most ${MAX_FRAME_BYTES})`);
    expect(() => new FrameReader().push(Buffer.alloc(4))).toThrow('session frame of 0 bytes');
  });

  it('validates session messages each way, naming what is wrong', () => {
    expect(decodeToNexus(encode({ v: 1, type: 'session.out', session: 'abcdefgh-1', stream: 1, data: Buffer.from('x') })).type).toBe('session.out');
    expect(() => decodeToNexus(encode({ v: 1, type: 'session.start', session: 'abcdefgh-1' }))).toThrow("unknown session message type 'session.start'");
    expect(() => decodeToRunner(encode({ v: 1, type: 'session.resize', session: 'abcdefgh-1', rows: 0, cols: 80 }))).toThrow(/rows/);
    expect(() => decodeToRunner(encode({ v: 1, type: 'session.in', session: 'abcdefgh-1', data: Buffer.alloc(64 * 1024 + 1) }))).toThrow(/data/);
    expect(() => decodeToRunner(encode({ v: 1, type: 'session.signal', session: 'abcdefgh-1', signal: 'SIGKILL' }))).toThrow(/signal/);
  });
});
