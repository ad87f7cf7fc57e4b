/**
 * Reads what uWSGI's `logzmq` logger sends (pure). Checked against Debian's uWSGI 2.0.21: one ZeroMQ frame per
 * write() of a worker or the master, not per line — a frame may hold several lines, or part of one (Python's
 * print writes the text and its newline separately). Each frame goes through the vassal's log encoder, which
 * tags it with the app and instance. Two encodings are understood:
 *
 * - prefix (`log-encoder = prefix:NAME [pier:APP:INSTANCE]`, `log-req-encoder = prefix [pier-req:APP:INSTANCE]`):
 *   the raw bytes follow the tag (one optional space is skipped), trailing newline included, so lines split
 *   across writes are put back together by a LineAssembler.
 * - JSON (`log-encoder = json:NAME {"pier":1,"kind":"log","app":"APP","instance":"ID","at":${micros},"line":"${msg}"}`,
 *   kind "req" for the request logger): `${msg}` drops one trailing newline, so each frame is taken as whole
 *   lines; uWSGI escapes only `"`, `\`, CR, LF and tab, so other control bytes are escaped here before parsing.
 */
import { APP_NAME_PATTERN } from '../protocol/index.js';

/** One frame's worth of text, attributed. */
export interface UwsgiChunk {
  /** 'req' comes from the request logger, 'log' from everything else (uWSGI's messages and the app's output). */
  kind: 'log' | 'req';
  app: string;
  instance: string;
  text: string;
  /** When uWSGI logged it (JSON frames carry it), ms since the epoch. */
  atMs?: number;
  /** True when `text` holds whole lines (JSON); false for raw bytes that may end mid-line (prefix). */
  isWhole: boolean;
}

const APP = new RegExp(APP_NAME_PATTERN);
const INSTANCE = /^[A-Za-z0-9._:-]{1,128}$/;
const PREFIX = /^\[(pier|pier-req):([a-z][a-z0-9-]{0,29}):([A-Za-z0-9._:-]{1,128})\] ?/;

/** Parses one frame; undefined when it carries no valid Pier tag (the caller counts and drops it). */
export function parseUwsgiFrame(frame: Buffer): UwsgiChunk | undefined {
  const first = frame[0];
  if (first === 0x5b /* [ */) return parsePrefixed(frame.toString('utf8'));
  if (first === 0x7b /* { */) return parseJson(frame.toString('utf8'));
  return undefined;
}

function parsePrefixed(text: string): UwsgiChunk | undefined {
  const match = PREFIX.exec(text);
  if (!match) return undefined;
  return { kind: match[1] === 'pier-req' ? 'req' : 'log', app: match[2]!, instance: match[3]!, text: text.slice(match[0].length), isWhole: false };
}

function parseJson(text: string): UwsgiChunk | undefined {
  let value: unknown;
  try {
    // Raw control characters can only be inside the "line" string (the template has none): escape them.
    value = JSON.parse(text.replace(/[\u0000-\u001f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
  } catch {
    return undefined;
  }
  const v = value as { pier?: unknown; kind?: unknown; app?: unknown; instance?: unknown; at?: unknown; line?: unknown } | null;
  if (typeof v !== 'object' || v === null || v.pier !== 1 || (v.kind !== 'log' && v.kind !== 'req')) return undefined;
  if (typeof v.app !== 'string' || !APP.test(v.app) || typeof v.instance !== 'string' || !INSTANCE.test(v.instance)) return undefined;
  if (typeof v.line !== 'string') return undefined;
  const chunk: UwsgiChunk = { kind: v.kind, app: v.app, instance: v.instance, text: v.line, isWhole: true };
  if (typeof v.at === 'number' && Number.isFinite(v.at) && v.at > 0) chunk.atMs = Math.floor(v.at / 1000);
  return chunk;
}

/** A line put back together, or cut because it grew too long or waited too long for its end. */
export interface AssembledLine {
  key: string;
  line: string;
}

/**
 * Joins raw chunks into lines, per stream (a stream is one instance's log or request log). A partial line is
 * released when its end arrives, when it reaches `maxChars`, or `maxWaitMs` after it started.
 */
export class LineAssembler {
  private readonly partial = new Map<string, { text: string; sinceMs: number }>();

  constructor(
    private readonly maxChars: number,
    private readonly maxWaitMs: number,
  ) {}

  /** Number of streams holding a partial line. */
  get size(): number {
    return this.partial.size;
  }

  /** Adds a chunk of stream `key`; returns the lines it completed (without their newline). */
  push(key: string, chunk: string, nowMs: number): string[] {
    const held = this.partial.get(key);
    const text = held ? held.text + chunk : chunk;
    const parts = text.split('\n');
    const rest = parts.pop()!;
    if (rest === '') this.partial.delete(key);
    else if (rest.length >= this.maxChars) {
      parts.push(rest);
      this.partial.delete(key);
    } else {
      this.partial.set(key, { text: rest, sinceMs: parts.length > 0 || !held ? nowMs : held.sinceMs });
    }
    return parts;
  }

  /** Releases partial lines older than `maxWaitMs` (all of them with `isAll`). */
  expire(nowMs: number, isAll = false): AssembledLine[] {
    const out: AssembledLine[] = [];
    for (const [key, held] of this.partial) {
      if (isAll || nowMs - held.sinceMs >= this.maxWaitMs) {
        out.push({ key, line: held.text });
        this.partial.delete(key);
      }
    }
    return out;
  }
}
