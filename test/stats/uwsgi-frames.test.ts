import { describe, expect, it } from 'vitest';
import { LineAssembler, parseUwsgiFrame } from '../../src/stats/uwsgi-frames.js';

const frame = (text: string): Buffer => Buffer.from(text, 'utf8');
const json = (fields: Record<string, unknown>): Buffer => frame(JSON.stringify({ pier: 1, kind: 'log', app: 'web', instance: 'web.1', line: 'x', ...fields }));

describe('parseUwsgiFrame', () => {
  it('reads a prefix-tagged log frame, skipping one space and keeping the raw text', () => {
    expect(parseUwsgiFrame(frame('[pier:web:web.1] hello\nwor'))).toEqual({ kind: 'log', app: 'web', instance: 'web.1', text: 'hello\nwor', isWhole: false });
    expect(parseUwsgiFrame(frame('[pier:web:web.1]  two spaces\n'))!.text).toBe(' two spaces\n');
  });

  it('reads a prefix-tagged request-log frame', () => {
    expect(parseUwsgiFrame(frame('[pier-req:my-app-2:i-3:x.y_z]GET / => 200\n'))).toEqual({
      kind: 'req', app: 'my-app-2', instance: 'i-3:x.y_z', text: 'GET / => 200\n', isWhole: false,
    });
  });

  it.each([
    ['unknown tag', '[other:web:web.1] x'],
    ['upper-case app', '[pier:Web:web.1] x'],
    ['app starting with a digit', '[pier:1web:web.1] x'],
    ['app of 31 characters', `[pier:${'a'.repeat(31)}:i] x`],
    ['empty instance', '[pier:web:] x'],
    ['instance with a space', '[pier:web:web 1] x'],
    ['instance of 129 characters', `[pier:web:${'i'.repeat(129)}] x`],
    ['missing bracket', '[pier:web:web.1 x'],
    ['untagged text', 'hello world'],
    ['tag not at the start', ' [pier:web:web.1] x'],
    ['empty frame', ''],
  ])('rejects a frame with %s', (_why, text) => {
    expect(parseUwsgiFrame(frame(text))).toBeUndefined();
  });

  it('reads a JSON frame as whole lines with its time in ms', () => {
    expect(parseUwsgiFrame(json({ kind: 'req', at: 1_764_043_200_123_456, line: 'GET / 200' }))).toEqual({
      kind: 'req', app: 'web', instance: 'web.1', text: 'GET / 200', atMs: 1_764_043_200_123, isWhole: true,
    });
  });

  it('leaves the time out when it is missing, zero or not a number', () => {
    expect(parseUwsgiFrame(json({}))!.atMs).toBeUndefined();
    expect(parseUwsgiFrame(json({ at: 0 }))!.atMs).toBeUndefined();
    expect(parseUwsgiFrame(json({ at: '123' }))!.atMs).toBeUndefined();
  });

  it('accepts raw control characters inside the line, which uWSGI does not escape', () => {
    const raw = '{"pier":1,"kind":"log","app":"web","instance":"web.1","line":"bell\u0007 esc\u001b[31m nul\u0000 tab\tend"}';
    expect(parseUwsgiFrame(frame(raw))!.text).toBe('bell\u0007 esc\u001b[31m nul\u0000 tab\tend');
    const escaped = '{"pier":1,"kind":"log","app":"web","instance":"web.1","line":"a\\nb \\"q\\" \\\\"}';
    expect(parseUwsgiFrame(frame(escaped))!.text).toBe('a\nb "q" \\');
  });

  it.each([
    ['pier is not 1', { pier: 2 }],
    ['unknown kind', { kind: 'debug' }],
    ['invalid app', { app: '../etc' }],
    ['app not a string', { app: 7 }],
    ['invalid instance', { instance: 'a b' }],
    ['line missing', { line: undefined }],
    ['line not a string', { line: ['x'] }],
  ])('rejects a JSON frame when %s', (_why, fields) => {
    expect(parseUwsgiFrame(json(fields))).toBeUndefined();
  });

  it('rejects JSON that does not parse or is not an object', () => {
    expect(parseUwsgiFrame(frame('{"pier":1,'))).toBeUndefined();
    expect(parseUwsgiFrame(frame('{not json}'))).toBeUndefined();
    expect(parseUwsgiFrame(frame('[1,2,3]'))).toBeUndefined();
  });
});

describe('LineAssembler', () => {
  it('joins partial writes into lines', () => {
    const a = new LineAssembler(1000, 1000);
    expect(a.push('k', 'hel', 0)).toEqual([]);
    expect(a.size).toBe(1);
    expect(a.push('k', 'lo\nwor', 1)).toEqual(['hello']);
    expect(a.push('k', 'ld\n', 2)).toEqual(['world']);
    expect(a.size).toBe(0);
    expect(a.push('k', 'one\ntwo\n\nthree\n', 3)).toEqual(['one', 'two', '', 'three']);
    expect(a.push('k', 'print', 4)).toEqual([]);
    expect(a.push('k', '\n', 5)).toEqual(['print']);
  });

  it('keeps streams apart', () => {
    const a = new LineAssembler(1000, 1000);
    a.push('one', 'aa', 0);
    a.push('two', 'bb', 0);
    expect(a.push('one', '1\n', 1)).toEqual(['aa1']);
    expect(a.push('two', '2\n', 1)).toEqual(['bb2']);
  });

  it('releases a partial line maxWaitMs after it started, not after its last piece', () => {
    const a = new LineAssembler(1000, 1000);
    a.push('k', 'slow', 100);
    a.push('k', ' and steady', 900);
    expect(a.expire(1099)).toEqual([]);
    expect(a.expire(1100)).toEqual([{ key: 'k', line: 'slow and steady' }]);
    expect(a.size).toBe(0);
    expect(a.expire(5000)).toEqual([]);
  });

  it('restarts the clock when a new partial line begins after a complete one', () => {
    const a = new LineAssembler(1000, 1000);
    a.push('k', 'first', 0);
    a.push('k', '\nsecond', 800);
    expect(a.expire(1500)).toEqual([]);
    expect(a.expire(1800)).toEqual([{ key: 'k', line: 'second' }]);
  });

  it('releases every partial line on expire(isAll)', () => {
    const a = new LineAssembler(1000, 1000);
    a.push('x', 'a', 10);
    a.push('y', 'b', 10);
    expect(a.expire(10, true).sort((p, q) => p.key.localeCompare(q.key))).toEqual([{ key: 'x', line: 'a' }, { key: 'y', line: 'b' }]);
    expect(a.size).toBe(0);
  });

  it('releases a partial line once it reaches maxChars', () => {
    const a = new LineAssembler(10, 1000);
    expect(a.push('k', '12345', 0)).toEqual([]);
    expect(a.push('k', '67890', 1)).toEqual(['1234567890']);
    expect(a.size).toBe(0);
    expect(a.push('k', 'next\n', 2)).toEqual(['next']);
  });
});
