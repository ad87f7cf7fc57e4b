import { describe, expect, it } from 'vitest';
import { MAX_LOG_LINE_CHARS, type AccessMessage } from '../../src/protocol/index.js';
import { TIMESTAMP_CHARS, formatAccessLine, formatLogLine, lineTimestamp, splitLogText } from '../../src/stats/format.js';

const AT = Date.UTC(2026, 10, 25, 4, 0, 0, 123);

function access(overrides: Partial<AccessMessage> = {}): AccessMessage {
  return {
    v: 1, type: 'access', app: 'web', host: 'web.example.com', method: 'GET', path: '/index.html', status: 200, bytes: 512,
    durationMs: 12.345, backend: '10.0.0.5:8001', requestId: 'req-1', balancerId: 'balancer-1', at: AT, ...overrides,
  };
}

describe('splitLogText', () => {
  it('drops one trailing newline and CR before LF, keeping empty lines inside the text', () => {
    expect(splitLogText('hello\n')).toEqual(['hello']);
    expect(splitLogText('hello')).toEqual(['hello']);
    expect(splitLogText('a\r\nb\r\n')).toEqual(['a', 'b']);
    expect(splitLogText('a\n\nb')).toEqual(['a', '', 'b']);
    expect(splitLogText('a\r\rb')).toEqual(['a\r\rb']);
  });

  it('returns no lines for empty text or a lone newline', () => {
    expect(splitLogText('')).toEqual([]);
    expect(splitLogText('\n')).toEqual([]);
  });

  it('cuts each line at MAX_LOG_LINE_CHARS and marks the cut', () => {
    const long = 'x'.repeat(MAX_LOG_LINE_CHARS + 10);
    const exact = 'y'.repeat(MAX_LOG_LINE_CHARS);
    const lines = splitLogText(`${long}\n${exact}\nshort`);
    expect(lines[0]).toBe(`${'x'.repeat(MAX_LOG_LINE_CHARS)}…`);
    expect(lines[1]).toBe(exact);
    expect(lines[2]).toBe('short');
  });
});

describe('formatLogLine', () => {
  it('writes the Heroku-style line', () => {
    expect(formatLogLine(AT, 'app', 'web.1', 'Listening on 8000')).toBe('2026-11-25T04:00:00.123Z app[web.1]: Listening on 8000');
    expect(formatLogLine(AT, 'pier', 'nexus-1', 'deployed v3')).toBe('2026-11-25T04:00:00.123Z pier[nexus-1]: deployed v3');
  });

  it('replaces characters that could break out of the origin brackets', () => {
    expect(formatLogLine(AT, 'app', 'i-1]: forged\n', 'x')).toBe('2026-11-25T04:00:00.123Z app[i-1_:_forged_]: x');
    expect(formatLogLine(AT, 'app', '', 'x')).toBe('2026-11-25T04:00:00.123Z app[-]: x');
    const origin = formatLogLine(AT, 'app', 'o'.repeat(300), 'x');
    expect(origin).toBe(`2026-11-25T04:00:00.123Z app[${'o'.repeat(128)}]: x`);
  });

  it.each([Number.NaN, -1, Number.POSITIVE_INFINITY, 8.64e15 + 1, Date.UTC(10000, 0, 1)])(
    'shows the epoch for the invalid time %s',
    (atMs) => {
      const line = formatLogLine(atMs, 'app', 'web.1', 'x');
      expect(line).toBe('1970-01-01T00:00:00.000Z app[web.1]: x');
    },
  );

  it('keeps a fixed-width timestamp up to the year 9999', () => {
    const line = formatLogLine(Date.UTC(9999, 11, 31, 23, 59, 59, 999), 'app', 'a', 'x');
    expect(line.slice(0, TIMESTAMP_CHARS)).toBe('9999-12-31T23:59:59.999Z');
  });
});

describe('formatAccessLine', () => {
  it('writes the router line in key=value form', () => {
    expect(formatAccessLine(access())).toBe(
      '2026-11-25T04:00:00.123Z router[balancer-1]: method=GET path="/index.html" host=web.example.com status=200 bytes=512 '
      + 'service=12.3ms backend=10.0.0.5:8001 request_id=req-1',
    );
    expect(formatAccessLine(access({ backend: null, app: null }))).toContain(' backend=- ');
  });

  it('escapes a hostile host, method, path and request id so the record stays one line with one value per key', () => {
    const line = formatAccessLine(access({
      host: 'evil.com status=200\n2026-11-25T04:00:00.000Z app[web.1]: forged',
      method: 'GET /admin',
      path: '/a"b\nc d',
      requestId: 'id x\r\nrequest_id=other',
    }));
    expect(line).not.toMatch(/[\r\n]/);
    const host = /host=(\S*)/.exec(line)![1];
    expect(host).toBe('evil.com_status_200_2026-11-25T04:00:00.000Z_app[web.1]:_forged');
    expect(line).toContain(' method=GET__admin ');
    expect(line).toContain(' path="/a\\"b\\nc d" ');
    expect(line.endsWith(' request_id=id_x__request_id_other')).toBe(true);
    expect(line.match(/ request_id=/g)).toHaveLength(1);
    expect(line.match(/ status=/g)).toHaveLength(1);
  });

  it('keeps IPv6 and wildcard hosts readable', () => {
    expect(formatAccessLine(access({ host: '[::1]:8080' }))).toContain(' host=[::1]:8080 ');
    expect(formatAccessLine(access({ host: '*.example.com' }))).toContain(' host=*.example.com ');
  });
});

describe('lineTimestamp', () => {
  it('returns the timestamp prefix of a stored line', () => {
    expect(lineTimestamp(formatLogLine(AT, 'app', 'web.1', 'x'))).toBe('2026-11-25T04:00:00.123Z');
    expect(lineTimestamp(formatAccessLine(access()))).toBe('2026-11-25T04:00:00.123Z');
  });

  it('returns an empty string for a line without one', () => {
    expect(lineTimestamp('')).toBe('');
    expect(lineTimestamp('short')).toBe('');
    expect(lineTimestamp('this line is long enough but has no timestamp')).toBe('');
  });

  it('sorts lines in time order as text', () => {
    const times = [AT + 1000, AT, AT + 10, Date.UTC(2025, 0, 1)];
    const stamps = times.map((t) => lineTimestamp(formatLogLine(t, 'app', 'a', 'x'))).sort();
    expect(stamps).toEqual([...times].sort((a, b) => a - b).map((t) => new Date(t).toISOString()));
  });
});
