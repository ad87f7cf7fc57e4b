/**
 * Decides, entry by entry, whether an archive is a safe app folder: normalized relative names, only files,
 * folders and links that stay inside the tree, and every size and count limit. Pure: no I/O.
 */
import { ValidationError } from '../core/errors.js';
import { entryError, formatBytes, type ArchiveLimits } from './limits.js';
import { TYPE, type TarHeader } from './tar-format.js';

/** The kinds of entry Pier unpacks. */
export type EntryType = 'file' | 'directory' | 'symlink' | 'hardlink';

/** One accepted entry. */
export interface ArchiveEntry {
  /** Normalized relative path: no leading `./` or `/`, no trailing `/`, no `.` or `..` components. */
  path: string;
  type: EntryType;
  /** Bytes of content: the file's size, the linked file's size for a hard link (unpacked as a copy), else 0. */
  size: number;
  /** True when any execute bit is set on a file; unpacked as 0755, else 0644. */
  isExecutable: boolean;
  /** Symlink target as stored, or the normalized path of a hard link's file. */
  linkTarget?: string;
}

const REJECTED_TYPES: Record<string, string> = {
  [TYPE.charDevice]: 'is a character device',
  [TYPE.blockDevice]: 'is a block device',
  [TYPE.fifo]: 'is a FIFO',
};

/** Symlinks followed while resolving one target before it counts as a loop (Linux's own limit). */
const MAX_SYMLINK_HOPS = 40;

/**
 * Accumulates the tree an archive describes and rejects the first entry that breaks a rule. Call `add` for each
 * entry in archive order, then `finish` once (symlink targets are resolved through the whole tree there).
 */
export class ArchiveTree {
  readonly entries: ArchiveEntry[] = [];
  totalBytes = 0;
  private readonly kinds = new Map<string, EntryType>();
  private readonly fileSizes = new Map<string, number>();
  private readonly symlinks = new Map<string, string>();
  private count = 0;

  constructor(private readonly limits: ArchiveLimits) {}

  /** Validates one entry; returns it normalized, or null for the archive's root folder (`./`), which is skipped. */
  add(header: Pick<TarHeader, 'name' | 'typeflag' | 'mode' | 'size' | 'linkname'>): ArchiveEntry | null {
    const { name } = header;
    const type = entryType(header);
    const path = normalizeName(name);
    if (path === '') {
      if (type === 'directory') return null;
      throw entryError(name, 'has an empty name');
    }
    if (++this.count > this.limits.maxEntries) throw entryError(name, `is over the limit of ${this.limits.maxEntries} entries`);
    if (type !== 'file' && header.size > 0) throw entryError(name, `is a ${type} with ${formatBytes(header.size)} of content`);
    this.checkParents(name, path);
    this.checkDuplicate(name, path, type);
    const entry: ArchiveEntry = { path, type, size: 0, isExecutable: (header.mode & 0o111) !== 0 };
    if (type === 'file') {
      if (header.size > this.limits.maxFileBytes) {
        throw entryError(name, `is ${formatBytes(header.size)}, over the ${formatBytes(this.limits.maxFileBytes)} limit per file`);
      }
      entry.size = header.size;
      this.fileSizes.set(path, header.size);
    } else if (type === 'hardlink') {
      const target = isPlainRelative(header.linkname) ? normalizeName(header.linkname) : '';
      const size = this.fileSizes.get(target);
      if (target === '' || size === undefined) {
        throw entryError(name, `is a hard link to '${header.linkname}', which is not an earlier file in the archive`);
      }
      entry.size = size;
      entry.linkTarget = target;
      this.fileSizes.set(path, size);
    } else if (type === 'symlink') {
      this.checkSymlinkTarget(name, path, header.linkname);
      entry.linkTarget = header.linkname;
      this.symlinks.set(path, header.linkname);
    }
    this.totalBytes += entry.size;
    if (this.totalBytes > this.limits.maxBytes) {
      throw entryError(name, `takes the unpacked size past the ${formatBytes(this.limits.maxBytes)} limit`);
    }
    this.kinds.set(path, type);
    this.entries.push(entry);
    return entry;
  }

  /** Final checks once every entry is in: at least one file, and every symlink resolves inside the tree. */
  finish(): void {
    if (!this.entries.some((e) => e.type === 'file' || e.type === 'hardlink')) {
      throw new ValidationError('archive has no files');
    }
    for (const [path, target] of this.symlinks) {
      if (!this.resolvesInside(path, target)) throw entryError(path, `is a symlink to '${target}', outside the app folder`);
    }
  }

  private checkParents(name: string, path: string): void {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      const kind = this.kinds.get(parent);
      if (kind === undefined) this.kinds.set(parent, 'directory');
      else if (kind !== 'directory') throw entryError(name, `is inside '${parent}', which is a ${kind}, not a folder`);
    }
  }

  private checkDuplicate(name: string, path: string, type: EntryType): void {
    const existing = this.kinds.get(path);
    if (existing === undefined) return;
    const isSameKind = existing === type && (type === 'directory' || type === 'file');
    if (!isSameKind) throw entryError(name, `appears twice, as a ${existing} and as a ${type}`);
  }

  /** Lexical check as the entry arrives; the full check through other symlinks happens in finish(). */
  private checkSymlinkTarget(name: string, path: string, target: string): void {
    if (target === '') throw entryError(name, 'is a symlink with an empty target');
    if (target.startsWith('/')) throw entryError(name, `is a symlink to '${target}', outside the app folder`);
    if (hasControlCharacter(target)) throw entryError(name, 'is a symlink whose target has a control character');
    const depth = path.split('/').length - 1;
    let level = depth;
    for (const part of target.split('/')) {
      if (part === '..') level--;
      else if (part !== '' && part !== '.') level++;
      if (level < 0) throw entryError(name, `is a symlink to '${target}', outside the app folder`);
    }
  }

  /** Resolves a symlink the way the kernel will once unpacked, following the archive's other symlinks. */
  private resolvesInside(path: string, target: string): boolean {
    const stack = path.split('/').slice(0, -1);
    const queue = target.split('/');
    let hops = 0;
    while (queue.length > 0) {
      const part = queue.shift()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (stack.length === 0) return false;
        stack.pop();
        continue;
      }
      stack.push(part);
      const link = this.symlinks.get(stack.join('/'));
      if (link === undefined) continue;
      if (++hops > MAX_SYMLINK_HOPS) throw entryError(path, 'is a symlink loop');
      if (link.startsWith('/')) return false;
      stack.pop();
      queue.unshift(...link.split('/'));
    }
    return true;
  }
}

function entryType(header: Pick<TarHeader, 'name' | 'typeflag'>): EntryType {
  const { typeflag, name } = header;
  if (typeflag === TYPE.file || typeflag === TYPE.oldFile || typeflag === TYPE.contiguous) {
    return name.endsWith('/') ? 'directory' : 'file';
  }
  if (typeflag === TYPE.directory) return 'directory';
  if (typeflag === TYPE.symlink) return 'symlink';
  if (typeflag === TYPE.hardlink) return 'hardlink';
  const rejected = REJECTED_TYPES[typeflag];
  if (rejected) throw entryError(name, `${rejected}; only files, folders and links are allowed`);
  throw entryError(name, `has unsupported type '${typeflag.replace(/[^\x20-\x7e]/g, '?')}'`);
}

/** `./a//b/` → `a/b`; throws for absolute names, `..` components and control characters. */
export function normalizeName(name: string): string {
  if (hasControlCharacter(name)) throw entryError(name, 'has a control character in its name');
  if (name.startsWith('/')) throw entryError(name, 'has an absolute path');
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw entryError(name, 'escapes the app folder');
  return parts.join('/');
}

/** True for a name `normalizeName` accepts. */
function isPlainRelative(name: string): boolean {
  return !hasControlCharacter(name) && !name.startsWith('/') && !name.split('/').includes('..');
}

function hasControlCharacter(text: string): boolean {
  return /[\u0000-\u001f\u007f]/.test(text);
}
