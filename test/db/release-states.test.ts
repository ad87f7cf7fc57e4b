import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { assertTransition, FINAL_STATUSES, nextStatus, RELEASE_TRANSITIONS, type ReleaseTransition } from '../../src/db/release-states.js';
import type { ReleaseStatus } from '../../src/protocol/index.js';

const STATUSES: ReleaseStatus[] = ['pending', 'staged', 'live', 'superseded', 'failed'];

describe('release-states', () => {
  it('takes a deploy from pending to live, then superseded, when a newer one goes live', () => {
    expect(nextStatus('pending', 'live')).toBe('live');
    expect(nextStatus('live', 'supersede')).toBe('superseded');
  });

  it('fails only a release that has not gone live, and reverts only a live one', () => {
    expect(STATUSES.filter((s) => nextStatus(s, 'fail') !== undefined)).toEqual(['pending']);
    expect(STATUSES.filter((s) => nextStatus(s, 'revert') !== undefined)).toEqual(['live']);
    expect(nextStatus('live', 'revert')).toBe('failed');
  });

  it('promotes a staged release (or the previous live one on the stage slot) back to pending', () => {
    expect(nextStatus('staged', 'promote')).toBe('pending');
    expect(nextStatus('superseded', 'promote')).toBe('pending');
    expect(nextStatus('live', 'promote')).toBeUndefined();
  });

  it('keeps failed final: no transition leaves it', () => {
    expect(FINAL_STATUSES).toEqual(['failed']);
    for (const t of Object.keys(RELEASE_TRANSITIONS) as ReleaseTransition[]) expect(nextStatus('failed', t)).toBeUndefined();
  });

  it('refuses an illegal transition with a one-line error naming the status and the allowed ones', () => {
    expect(() => assertTransition('failed', 'live')).toThrowError(/^a failed release cannot live; only a pending one can$/);
    expect(() => assertTransition('superseded', 'stage')).toThrowError(expect.objectContaining({ code: 'PIER_ILLEGAL_STATE' }));
    expect(assertTransition('superseded', 'restore')).toBe('live');
  });

  it('reaches every status from pending', () => {
    const seen = new Set<ReleaseStatus>(['pending']);
    for (let changed = true; changed; ) {
      changed = false;
      for (const rule of Object.values(RELEASE_TRANSITIONS)) {
        if (rule.from.some((s) => seen.has(s)) && !seen.has(rule.to)) {
          seen.add(rule.to);
          changed = true;
        }
      }
    }
    expect([...seen].sort()).toEqual([...STATUSES].sort());
  });

  it('is reached by db modules that import each other in one direction only (no cycle)', () => {
    const dir = new URL('../../src/db/', import.meta.url);
    const graph = new Map<string, string[]>();
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts') && f !== 'index.ts')) {
      const text = readFileSync(new URL(file, dir), 'utf8');
      graph.set(file.replace(/\.ts$/, ''), [...text.matchAll(/from '\.\/([a-z0-9-]+)\.js'/g)].map((m) => m[1]!));
    }
    const cycles: string[] = [];
    const visit = (node: string, path: string[]): void => {
      for (const next of graph.get(node) ?? []) {
        if (path.includes(next)) cycles.push([...path.slice(path.indexOf(next)), next].join(' -> '));
        else visit(next, [...path, next]);
      }
    };
    for (const node of graph.keys()) visit(node, [node]);
    expect(cycles).toEqual([]);
    expect(graph.get('scheduling')).not.toContain('releases');
    expect(graph.get('config-vars')).not.toContain('releases');
  });
});
