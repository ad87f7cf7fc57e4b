import { describe, expect, it } from 'vitest';
import { ERROR_CODES, PierError, ProtocolError } from '../../src/core/errors.js';
import {
  APP_NAME_PATTERN, CONFIG_KEY_PATTERN, HOSTNAME_PATTERN, PATTERN_HINTS, PubMessage, RequestDecodeError,
  decode, decodeReply, decodeRequest, encode, encodeError, encodeReply, errorFromReply, resultOf,
  type ControlReply, type EventMessage,
} from '../../src/protocol/index.js';

/** The RequestDecodeError decodeRequest throws for `frame`. */
function rejection(frame: Uint8Array, maxBytes?: number): RequestDecodeError {
  try {
    decodeRequest(frame, maxBytes);
  } catch (err) {
    expect(err).toBeInstanceOf(RequestDecodeError);
    expect(err).toBeInstanceOf(ProtocolError);
    return err as RequestDecodeError;
  }
  throw new Error('expected decodeRequest to throw');
}

describe('codec', () => {
  it('round-trips requests of several commands when they are valid', () => {
    const requests = [
      { v: 1, type: 'ping', id: 'r-1' },
      { v: 1, type: 'app.create', id: 'r-2', token: 'pier_abc', name: 'my-app-2' },
      { v: 1, type: 'config.set', id: 'r-3', token: 't', app: 'shop', vars: { DATABASE_URL: 'postgres://x', _K1: '' } },
      { v: 1, type: 'config.unset', id: 'r-4', token: 't', app: 'shop', keys: ['A', 'B'] },
      { v: 1, type: 'host.add', id: 'r-5', token: 't', app: 'shop', hostname: '*.shop.example.com' },
      { v: 1, type: 'events.since', id: 'r-6', after: 41, limit: 10 },
    ] as const;
    for (const request of requests) {
      const frame = encode(request);
      expect(Buffer.isBuffer(frame)).toBe(true);
      expect(decodeRequest(frame)).toEqual(request);
    }
  });

  it('turns a reply into the checked result of its command when it is valid', () => {
    const reply = decodeReply(encodeReply('r-5', { hostnames: ['*.shop.example.com'] }));
    expect(resultOf('host.add', reply)).toEqual({ hostnames: ['*.shop.example.com'] });
  });

  it('round-trips replies and events through decode when they are valid', () => {
    const reply = decodeReply(encodeReply('r-1', { nexusId: 'nexus-1', version: 3, isLeader: true, at: 1 }));
    expect(reply).toEqual({ v: 1, type: 'reply', re: 'r-1', result: { nexusId: 'nexus-1', version: 3, isLeader: true, at: 1 } });
    const event: EventMessage = { v: 1, type: 'event', event: { version: 7, type: 'app.created', app: 'shop', data: { owner: 'alice' }, at: 1700000000000 } };
    expect(decode(encode(event), PubMessage)).toEqual(event);
  });

  it('rejects a frame with PIER_TOO_LARGE when it exceeds the limit', () => {
    const frame = encode({ v: 1, type: 'ping', id: 'big', pad: 'x'.repeat(2000) });
    const err = rejection(frame, 1024);
    expect(err.code).toBe('PIER_TOO_LARGE');
    expect(err.message).toBe(`message of ${frame.byteLength} bytes exceeds the limit of 1024 bytes`);
    // Nothing of an oversize frame is read, not even its id.
    expect(err.re).toBeNull();
    // One byte under the limit is decoded (and then judged on its content).
    const fits = encode({ v: 1, type: 'ping', id: 'fits' });
    expect(decodeRequest(fits, fits.byteLength)).toEqual({ v: 1, type: 'ping', id: 'fits' });
  });

  it('rejects garbage bytes as malformed with PIER_PROTOCOL and no id', () => {
    const truncated = encode({ v: 1, type: 'ping', id: 'cut' }).subarray(0, 6);
    for (const frame of [Buffer.from([0xc1, 0xff, 0x00, 0x12]), Buffer.from([0xdf, 0xff, 0xff, 0xff, 0xff]), truncated]) {
      const err = rejection(frame);
      expect(err.code).toBe('PIER_PROTOCOL');
      expect(err.message).toBe('malformed MessagePack frame');
      expect(err.re).toBeNull();
    }
  });

  it('rejects the never-used MessagePack byte 0xc1 as malformed when it is the whole frame', () => {
    const err = rejection(Buffer.from([0xc1]));
    expect(err.code).toBe('PIER_PROTOCOL');
    expect(err.message).toBe('malformed MessagePack frame');
  });

  it('rejects an empty frame with PIER_PROTOCOL', () => {
    const err = rejection(Buffer.alloc(0));
    expect(err.code).toBe('PIER_PROTOCOL');
    expect(err.message).toContain('empty frame');
  });

  it('rejects valid MessagePack that is not a request map', () => {
    for (const value of [[1, 2, 3], 42, 'ping', null, true]) {
      const err = rejection(encode(value as object));
      expect(err.code).toBe('PIER_PROTOCOL');
      expect(err.message).toBe('invalid request: expected a map with v, type and id');
      expect(err.re).toBeNull();
    }
  });

  it('rejects an unsupported protocol version and answers to the id when it is readable', () => {
    const err = rejection(encode({ v: 2, type: 'ping', id: 'v2-req' }));
    expect(err.code).toBe('PIER_PROTOCOL');
    expect(err.message).toBe('invalid request: unsupported protocol version 2; expected 1');
    expect(err.re).toBe('v2-req');
  });

  it('rejects an unknown type with PIER_UNKNOWN_TYPE and re set to the id', () => {
    const err = rejection(encode({ v: 1, type: 'app.explode', id: 'req-42' }));
    expect(err.code).toBe('PIER_UNKNOWN_TYPE');
    expect(err.message).toBe("unknown message type 'app.explode'");
    expect(err.re).toBe('req-42');
    for (const type of ['constructor', '__proto__', 'toString']) expect(rejection(encode({ v: 1, type, id: 'p' })).code).toBe('PIER_UNKNOWN_TYPE');
    expect(rejection(encode({ v: 1, id: 'no-type' })).message).toBe('unknown message type missing');
  });

  it('names the path and the human hint when a field is invalid', () => {
    const badName = rejection(encode({ v: 1, type: 'app.create', id: 'c-1', token: 't', name: 'My_App' }));
    expect(badName.code).toBe('PIER_PROTOCOL');
    expect(badName.re).toBe('c-1');
    expect(badName.message).toBe(`invalid 'app.create' request: /name ${PATTERN_HINTS[APP_NAME_PATTERN]}`);
    expect(badName.details).toEqual({ path: '/name' });

    const badHost = rejection(encode({ v: 1, type: 'host.add', id: 'c-2', token: 't', app: 'shop', hostname: 'Bad Host' }));
    expect(badHost.message).toBe(`invalid 'host.add' request: /hostname ${PATTERN_HINTS[HOSTNAME_PATTERN]}`);

    const badKey = rejection(encode({ v: 1, type: 'config.unset', id: 'c-3', token: 't', app: 'shop', keys: ['1ST'] }));
    expect(badKey.message).toBe(`invalid 'config.unset' request: /keys/0 ${PATTERN_HINTS[CONFIG_KEY_PATTERN]}`);
  });

  it('names the field when a request has an unknown or a missing field', () => {
    const extra = rejection(encode({ v: 1, type: 'ping', id: 'x-1', extra: true }));
    expect(extra.message).toContain('/extra');
    const missing = rejection(encode({ v: 1, type: 'app.create', id: 'x-2', token: 't' }));
    expect(missing.message).toContain('/name');
    const wrongType = rejection(encode({ v: 1, type: 'events.since', id: 'x-3', after: -1 }));
    expect(wrongType.message).toContain('/after');
  });

  it('keeps the error message short when a request field is huge', () => {
    const hugeType = rejection(encode({ v: 1, type: 't'.repeat(10_000), id: 'h-1' }));
    expect(hugeType.message.length).toBeLessThan(200);
    const hugeVersion = rejection(encode({ v: 'v'.repeat(10_000), type: 'ping', id: 'h-2' }));
    expect(hugeVersion.message.length).toBeLessThan(200);
  });

  it('answers with an error reply a client can decode when the request id is not a valid id', () => {
    // 'a b' is a string (so it looks like an id) but not a RequestId (printable, no spaces).
    const err = rejection(encode({ v: 1, type: 'ping', id: 'a b' }));
    expect(err.code).toBe('PIER_PROTOCOL');
    const reply = decodeReply(encodeError(err.re, err));
    expect(reply.type).toBe('error');
  });

  it('makes an error reply carry the code, message and details of the error', () => {
    const err = rejection(encode({ v: 1, type: 'app.create', id: 'e-1', token: 't', name: '9lives' }));
    const reply = decodeReply(encodeError(err.re, err));
    expect(reply).toEqual({ v: 1, type: 'error', re: 'e-1', code: 'PIER_PROTOCOL', message: err.message, details: { path: '/name' } });
    // A non-Pier error crosses the wire as an internal error, without its text.
    const internal = decodeReply(encodeError('e-2', new Error('secret stack detail')));
    expect(internal).toMatchObject({ type: 'error', re: 'e-2', code: 'PIER_INTERNAL', message: 'internal error' });
  });

  it('makes resultOf throw a PierError with the code from an error reply', () => {
    const reply: ControlReply = { v: 1, type: 'error', re: 'q-1', code: 'PIER_NOT_FOUND', message: "app 'x' not found", details: { app: 'x' } };
    let thrown: unknown;
    try {
      resultOf('app.info', reply);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(PierError);
    expect((thrown as PierError).code).toBe('PIER_NOT_FOUND');
    expect((thrown as PierError).message).toBe("app 'x' not found");
    expect((thrown as PierError).details).toEqual({ app: 'x' });
    for (const code of Object.keys(ERROR_CODES)) {
      expect(() => resultOf('ping', { v: 1, type: 'error', re: 'q', code, message: 'm' })).toThrow(expect.objectContaining({ code }));
    }
  });

  it('turns an unknown error code from the wire into PIER_INTERNAL', () => {
    const err = errorFromReply({ v: 1, type: 'error', re: null, code: 'PIER_MADE_UP', message: 'strange' });
    expect(err.code).toBe('PIER_INTERNAL');
    expect(err.message).toBe('strange');
  });

  it('returns the checked result from resultOf when the reply is valid, and rejects a result of the wrong shape', () => {
    const pong = { nexusId: 'nexus-1', version: 5, isLeader: false, at: 10 };
    expect(resultOf('ping', { v: 1, type: 'reply', re: 'p', result: pong })).toEqual(pong);
    expect(() => resultOf('ping', { v: 1, type: 'reply', re: 'p', result: { nexusId: 'nexus-1' } }))
      .toThrow(expect.objectContaining({ code: 'PIER_PROTOCOL', message: expect.stringContaining("'ping' result") }));
  });
});
