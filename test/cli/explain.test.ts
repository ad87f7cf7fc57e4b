/** `pier explain` pieces without a platform: the --since check and the one-line-per-entry format. */
import { describe, expect, it } from 'vitest';
import { formatExplain, parseExplainSince } from '../../src/cli/commands/explain.js';
import type { ExplainEntry, ExplainResponse } from '../../src/protocol/index.js';

const AT = Date.UTC(2026, 11, 1, 10, 0, 0);

function entry(kind: string, summary: string, offsetMs = 0): ExplainEntry {
  return { at: AT + offsetMs, kind, summary, version: null, type: null, event: null, data: {} };
}

describe('parseExplainSince', () => {
  it('accepts minutes, hours and days up to 30 days, plain digits as minutes', () => {
    expect(parseExplainSince('30m')).toBe(30 * 60_000);
    expect(parseExplainSince('1h')).toBe(3_600_000);
    expect(parseExplainSince('2d')).toBe(2 * 86_400_000);
    expect(parseExplainSince('90')).toBe(90 * 60_000);
    expect(parseExplainSince('30d')).toBe(30 * 86_400_000);
  });

  it('refuses anything else in one line naming the value', () => {
    for (const bad of ['', '1w', '31d', '0m', '-1h', '1.5h', '1h30m', ' 1h', '721h']) {
      expect(() => parseExplainSince(bad)).toThrowError(`--since '${bad}' is not a window like 30m, 1h or 2d (at most 30 days)`);
    }
  });
});

describe('formatExplain', () => {
  it('prints the time, the kind padded to the widest (at least 8) and the summary', () => {
    const body: ExplainResponse = { app: 'x', since: AT, truncated: false, entries: [entry('deploy', 'v3 created by alice'), entry('node', 'runner r1 down', 1)] };
    expect(formatExplain(body)).toEqual([
      '2026-12-01T10:00:00.000Z  deploy   v3 created by alice',
      '2026-12-01T10:00:00.001Z  node     runner r1 down',
    ]);
    const wide = formatExplain({ ...body, entries: [entry('remediation', 'restart'), entry('lock', 'taken')] });
    expect(wide).toEqual(['2026-12-01T10:00:00.000Z  remediation restart', '2026-12-01T10:00:00.000Z  lock        taken']);
  });

  it('prints no terminal escape an app put in its text', () => {
    const [line] = formatExplain({ app: 'x', since: AT, truncated: false, entries: [entry('deploy', 'v2 failed: \u001b]0;owned\u0007\u001b[2J')] });
    expect(line).toBe('2026-12-01T10:00:00.000Z  deploy   v2 failed: ?]0;owned??[2J');
  });
});
