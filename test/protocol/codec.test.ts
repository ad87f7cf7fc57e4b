import { describe, expect, it } from 'vitest';
import { PierError, ProtocolError } from '../../src/core/errors.js';
import { RequestDecodeError, decodeReply, decodeRequest, encode, encodeError, encodeReply, resultOf } from '../../src/protocol/index.js';

function decodeError(frame: Buffer, maxBytes?: number): RequestDecodeError {
  try {
    decodeRequest(frame, maxBytes);
  } catch (err) {
    return err as RequestDecodeError;
  }
  throw new Error('expected a decode error');
}

describe('codec', () => {
  it('round-trips a request and its reply', () => {
    const request = decodeRequest(encode({ v: 1, type: 'host.add', id: 'r1', token: 't', app: 'blog', hostname: '*.example.com' }));
    expect(request).toMatchObject({ type: 'host.add', hostname: '*.example.com' });
    const reply = decodeReply(encodeReply('r1', { hostnames: ['*.example.com'] }));
    expect(resultOf('host.add', reply)).toEqual({ hostnames: ['*.example.com'] });
  });

  it('refuses an oversize frame before decoding it', () => {
    const err = decodeError(encode({ v: 1, type: 'ping', id: 'big', pad: 'x'.repeat(2000) }), 1024);
    expect(err.code).toBe('PIER_TOO_LARGE');
    expect(err.message).toMatch(/exceeds the limit of 1024 bytes/);
  });

  it('names garbage, unknown types and invalid fields, keeping the id to answer to', () => {
    expect(decodeError(Buffer.from([0xc1, 0x00])).code).toBe('PIER_PROTOCOL');
    const unknown = decodeError(encode({ v: 1, type: 'app.explode', id: 'r2' }));
    expect(unknown.code).toBe('PIER_UNKNOWN_TYPE');
    expect(unknown.re).toBe('r2');
    const invalid = decodeError(encode({ v: 1, type: 'app.create', id: 'r3', token: 't', name: 'Bad_Name' }));
    expect(invalid.re).toBe('r3');
    expect(invalid.message).toBe("invalid 'app.create' request: /name must be lowercase letters, digits and dashes, start with a letter, and be at most 30 characters");
    expect(decodeError(encode({ v: 2, type: 'ping', id: 'r4' })).message).toMatch(/unsupported protocol version 2/);
  });

  it('turns an error reply back into a PierError with its code', () => {
    const reply = decodeReply(encodeError('r5', new PierError('PIER_NOT_FOUND', "app 'x' not found")));
    expect(() => resultOf('app.info', reply)).toThrowError(expect.objectContaining({ code: 'PIER_NOT_FOUND', message: "app 'x' not found" }));
  });

  it('checks results too: a malformed result is a protocol error, not a crash later', () => {
    const reply = decodeReply(encodeReply('r6', { nexusId: 'n', version: -1, isLeader: true, at: 0 }));
    expect(() => resultOf('ping', reply)).toThrow(ProtocolError);
  });
});
