/** Reads the end of a vassal's log file and picks out why an app failed to start, for the instance's error text. */
import { openAppFile } from './checked-open.js';

/** Largest error summary returned, in characters (it ends up in the instance's state and the CLI). */
const MAX_SUMMARY_CHARS = 2000;

/** The line read instead of a log file that was replaced by something the runner does not read. */
export function replacedLogLine(reason: string): string {
  return `pier: this log file was replaced (${reason}) and is ignored`;
}

/**
 * The last `maxLines` lines of a file, reading at most `maxBytes` from its end; [] when the file does not exist.
 * A file rotated a moment ago may be short: callers wanting more context can also read `<path>.1`. The file may be
 * an app's: it is opened with `openAppFile`, and one `replacedLogLine` is returned instead of a link, FIFO or
 * foreign file.
 */
export async function readLastLines(path: string, maxLines = 50, maxBytes = 64 * 1024): Promise<string[]> {
  const file = await openAppFile(path);
  if (file.kind === 'missing') return [];
  if (file.kind === 'refused') return [replacedLogLine(file.reason)];
  const { handle } = file;
  try {
    const { size } = file.stat;
    const length = Math.min(size, maxBytes);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    const lines = buffer.toString('utf8').split('\n');
    if (length < size) lines.shift(); // the first line was cut
    if (lines.at(-1) === '') lines.pop();
    return lines.slice(-maxLines);
  } finally {
    await handle.close();
  }
}

/**
 * The most useful part of a failed vassal's log: its last Python traceback (through the exception line), else the
 * last lines uWSGI flags as errors, else the last few lines. Undefined for an empty log.
 */
export function summarizeFailure(lines: readonly string[]): string | undefined {
  return summarize(lines)?.text;
}

/**
 * `summarizeFailure`, saying whether the lines picked are the app's error (a traceback, or lines uWSGI flags as
 * errors) or only the last lines of a log that shows none (then the runner's own reason says more).
 */
export function summarize(lines: readonly string[]): { text: string; isAppError: boolean } | undefined {
  let isAppError = true;
  const start = lines.map((l) => l.startsWith('Traceback (most recent call last):')).lastIndexOf(true);
  let picked: readonly string[];
  if (start !== -1) {
    // The traceback ends at its first unindented line after the header: the exception itself.
    let end = start + 1;
    while (end < lines.length && /^\s/.test(lines[end]!)) end++;
    picked = lines.slice(start, end + 1);
  } else {
    const flagged = lines.filter((l) => /error|unable|cannot|failed|no such|not found|invalid|unknown config/i.test(l));
    isAppError = flagged.length > 0;
    picked = isAppError ? flagged.slice(-5) : lines.slice(-5);
  }
  const text = picked.join('\n').trim();
  if (text === '') return undefined;
  return { text: text.length > MAX_SUMMARY_CHARS ? `…${text.slice(-MAX_SUMMARY_CHARS)}` : text, isAppError };
}
