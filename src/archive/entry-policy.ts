/**
 * Decides, entry by entry, whether an archive is a safe app folder: normalized relative names, only files,
 * folders and links that stay inside the tree, and every size and count limit. Pure: no I/O.
 */
import { ValidationError } from '../core/errors.js';
import { NAME_MAX_BYTES, PATH_FIX, checkPathBytes, entryError, formatBytes, type ArchiveLimits } from './limits.js';
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

/** Symlinks one lookup may follow before it counts as a loop (Linux's own limit, MAXSYMLINKS). */
const MAX_SYMLINK_HOPS = 40;

/**
 * One node of the tree the archive describes: listed or implied by a path. Children are keyed by one path
 * component, so a lookup costs the component's length, never the whole prefix's (no prefix is ever re-joined).
 */
interface TreeNode {
  kind: EntryType;
  parent: TreeNode | undefined;
  /** Children by name, for folders. */
  children: Map<string, TreeNode> | undefined;
  /** Content size of a file or hard link. */
  size: number;
  /** A symlink's path and target, and where it resolves once known (see `ArchiveTree.resolve`). */
  link?: { path: string; target: string; resolved?: Resolution | 'resolving' };
}

/**
 * Where a path leads: the deepest existing folder on the way, plus how many components below it lead to names
 * the archive does not hold (only `..` can come back from those). `hops` counts the symlinks followed.
 */
interface Resolution {
  node: TreeNode;
  missing: number;
  hops: number;
}

/** An accepted entry, with the folders it brings into being (parents first; the entry itself when a new folder). */
export interface AcceptedEntry {
  entry: ArchiveEntry;
  newDirs: string[];
}

/**
 * Accumulates the tree an archive describes and rejects the first entry that breaks a rule. Call `add` for each
 * entry in archive order, then `finish` once (symlink targets are resolved through the whole tree there).
 * Every check costs time linear in the entry's name (bounded by `maxPathBytes`) and the tree holds at most
 * `maxEntries` nodes, so a whole archive costs time and memory linear in its size.
 */
export class ArchiveTree {
  readonly entries: ArchiveEntry[] = [];
  totalBytes = 0;
  private readonly root: TreeNode = { kind: 'directory', parent: undefined, children: new Map(), size: 0 };
  private readonly symlinks: TreeNode[] = [];
  private headers = 0;
  private nodes = 0;

  constructor(private readonly limits: ArchiveLimits) {}

  /** Validates one entry; returns it normalized, or null for the archive's root folder (`./`), which is skipped. */
  add(header: Pick<TarHeader, 'name' | 'typeflag' | 'mode' | 'size' | 'linkname'>): AcceptedEntry | null {
    const { name, linkname } = header;
    const { maxPathBytes, maxPathDepth, maxEntries } = this.limits;
    checkPathBytes(name, name, maxPathBytes, 'name');
    checkPathBytes(name, linkname, maxPathBytes, 'link');
    const type = entryType(header);
    const parts = splitName(name);
    if (parts.length > maxPathDepth) {
      throw entryError(name, `is ${parts.length} levels deep, over the ${maxPathDepth}-level limit for a path; ${PATH_FIX}`);
    }
    // Every header counts, repeats of './' too: each is work, and the inflation cap assumes this bound.
    if (++this.headers > maxEntries) throw entryError(name, `is over the limit of ${maxEntries} entries`);
    if (parts.length === 0) {
      if (type === 'directory') return null;
      throw entryError(name, 'has an empty name');
    }
    if (type !== 'file' && header.size > 0) throw entryError(name, `is a ${type} with ${formatBytes(header.size)} of content`);
    const path = parts.join('/');
    const newDirs: string[] = [];
    const parent = this.parentFolder(name, path, parts, newDirs);
    const leaf = parts[parts.length - 1]!;
    const existing = parent.children!.get(leaf);
    if (existing) this.checkDuplicate(name, existing.kind, type);
    const entry: ArchiveEntry = { path, type, size: 0, isExecutable: (header.mode & 0o111) !== 0 };
    if (type === 'file') {
      if (header.size > this.limits.maxFileBytes) {
        throw entryError(name, `is ${formatBytes(header.size)}, over the ${formatBytes(this.limits.maxFileBytes)} limit per file`);
      }
      entry.size = header.size;
    } else if (type === 'hardlink') {
      const target = isPlainRelative(linkname) ? this.lookupFile(linkname.split('/').filter((p) => p !== '' && p !== '.')) : undefined;
      if (target === undefined) {
        throw entryError(name, `is a hard link to '${linkname}', which is not an earlier file in the archive`);
      }
      entry.size = target.size;
      entry.linkTarget = target.path;
    } else if (type === 'symlink') {
      checkSymlinkTarget(name, parts.length - 1, linkname);
      entry.linkTarget = linkname;
    }
    this.totalBytes += entry.size;
    if (this.totalBytes > this.limits.maxBytes) {
      throw entryError(name, `takes the unpacked size past the ${formatBytes(this.limits.maxBytes)} limit`);
    }
    if (existing) existing.size = entry.size;
    else {
      this.countNode(name, newDirs.length > 0);
      const node: TreeNode = { kind: type, parent, children: type === 'directory' ? new Map() : undefined, size: entry.size };
      if (type === 'symlink') {
        node.link = { path, target: linkname };
        this.symlinks.push(node);
      }
      parent.children!.set(leaf, node);
      if (type === 'directory') newDirs.push(path);
    }
    this.entries.push(entry);
    return { entry, newDirs };
  }

  /** Final checks once every entry is in: at least one file, and every symlink resolves inside the tree. */
  finish(): void {
    if (!this.entries.some((e) => e.type === 'file' || e.type === 'hardlink')) {
      throw new ValidationError('archive has no files');
    }
    // Each symlink's target is walked once: a resolution is kept and reused by every link that goes through it.
    for (const link of this.symlinks) {
      if (this.resolve(link, 0) === undefined) throw entryError(link.link!.path, `is a symlink to '${link.link!.target}', outside the app folder`);
    }
  }

  /** Walks (creating what is implied) the folders above an entry; `newDirs` gets each folder created. */
  private parentFolder(name: string, path: string, parts: string[], newDirs: string[]): TreeNode {
    let node = this.root;
    let end = -1;
    for (let i = 0; i < parts.length - 1; i++) {
      const part = parts[i]!;
      end += part.length + 1;
      let child = node.children!.get(part);
      if (child === undefined) {
        this.countNode(name, true);
        child = { kind: 'directory', parent: node, children: new Map(), size: 0 };
        node.children!.set(part, child);
        newDirs.push(path.slice(0, end));
      } else if (child.kind !== 'directory') {
        throw entryError(name, `is inside '${path.slice(0, end)}', which is a ${child.kind}, not a folder`);
      }
      node = child;
    }
    return node;
  }

  private countNode(name: string, isImplied: boolean): void {
    if (++this.nodes <= this.limits.maxEntries) return;
    const why = isImplied ? ', counting the folders its path implies' : '';
    throw entryError(name, `is over the limit of ${this.limits.maxEntries} entries${why}`);
  }

  private checkDuplicate(name: string, existing: EntryType, type: EntryType): void {
    const isSameKind = existing === type && (type === 'directory' || type === 'file');
    if (!isSameKind) throw entryError(name, `appears twice, as a ${existing} and as a ${type}`);
  }

  /** The earlier file or hard link at this path (not through a symlink), with its normalized path. */
  private lookupFile(parts: string[]): { size: number; path: string } | undefined {
    if (parts.length === 0) return undefined;
    let node: TreeNode | undefined = this.root;
    for (const part of parts) {
      node = node.children?.get(part);
      if (node === undefined) return undefined;
    }
    if (node.kind !== 'file' && node.kind !== 'hardlink') return undefined;
    return { size: node.size, path: parts.join('/') };
  }

  /**
   * Resolves a symlink the way the kernel will once unpacked, following the archive's other symlinks; undefined
   * when it leads outside the app folder. Memoized per link, so all links together cost the sum of their targets'
   * lengths; `depth` (links being resolved around this one) stays ≤ MAX_SYMLINK_HOPS, so recursion is bounded too.
   */
  private resolve(link: TreeNode, depth: number): Resolution | undefined {
    const state = link.link!;
    if (state.resolved === 'resolving') throw entryError(state.path, 'is a symlink loop');
    if (state.resolved !== undefined) return state.resolved;
    if (depth >= MAX_SYMLINK_HOPS) throw tooManyHops(state.path);
    state.resolved = 'resolving';
    let node = link.parent!;
    let missing = 0;
    let hops = 1;
    for (const part of state.target.split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (missing > 0) missing--;
        else if (node.parent === undefined) return this.settle(state, undefined);
        else node = node.parent;
        continue;
      }
      if (missing > 0) {
        missing++;
        continue;
      }
      const child = node.children!.get(part);
      if (child === undefined || child.kind === 'file' || child.kind === 'hardlink') missing = 1;
      else if (child.kind === 'directory') node = child;
      else {
        const through = this.resolve(child, depth + 1);
        if (through === undefined) return this.settle(state, undefined);
        hops += through.hops;
        if (hops > MAX_SYMLINK_HOPS) throw tooManyHops(state.path);
        ({ node, missing } = through);
      }
    }
    return this.settle(state, { node, missing, hops });
  }

  private settle(state: NonNullable<TreeNode['link']>, resolution: Resolution | undefined): Resolution | undefined {
    // An escape is not memoized: finish() stops at the first one anyway.
    state.resolved = resolution;
    return resolution;
  }
}

function tooManyHops(path: string): ValidationError {
  return entryError(path, `is a chain of more than ${MAX_SYMLINK_HOPS} symlinks, more than Linux follows (or a loop)`);
}

/** Lexical check as the entry arrives (`depth`: folders above the link); the full check happens in finish(). */
function checkSymlinkTarget(name: string, depth: number, target: string): void {
  if (target === '') throw entryError(name, 'is a symlink with an empty target');
  if (target.startsWith('/')) throw entryError(name, `is a symlink to '${target}', outside the app folder`);
  if (hasControlCharacter(target)) throw entryError(name, 'is a symlink whose target has a control character');
  let level = depth;
  for (const part of target.split('/')) {
    if (part === '..') level--;
    else if (part !== '' && part !== '.') level++;
    if (level < 0) throw entryError(name, `is a symlink to '${target}', outside the app folder`);
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
  return splitName(name).join('/');
}

/**
 * `./a//b/` → `['a', 'b']`: the components of a normalized name, in one pass. Throws for absolute names, `..`
 * components, control characters and a component over NAME_MAX bytes (the runner could not create it).
 */
function splitName(name: string): string[] {
  if (hasControlCharacter(name)) throw entryError(name, 'has a control character in its name');
  if (name.startsWith('/')) throw entryError(name, 'has an absolute path');
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw entryError(name, 'escapes the app folder');
    if (part.length * 3 > NAME_MAX_BYTES && Buffer.byteLength(part) > NAME_MAX_BYTES) {
      throw entryError(name, `has a name of ${Buffer.byteLength(part)} bytes in its path, over the ${NAME_MAX_BYTES}-byte limit of Linux for one file or folder name`);
    }
    parts.push(part);
  }
  return parts;
}

/** True for a name `normalizeName` accepts. */
function isPlainRelative(name: string): boolean {
  return !hasControlCharacter(name) && !name.startsWith('/') && !name.split('/').includes('..');
}

function hasControlCharacter(text: string): boolean {
  return /[\u0000-\u001f\u007f]/.test(text);
}
