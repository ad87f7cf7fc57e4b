/** Safe release archives (tar.gz): validate an upload, unpack it all-or-nothing, pack an app folder. */
export { DEFAULT_ARCHIVE_LIMITS, formatBytes, type ArchiveLimits } from './limits.js';
export type { ArchiveEntry, EntryType } from './entry-policy.js';
export { inspectArchive, type ArchiveSummary } from './inspect.js';
export { extractArchive, type ExtractOptions } from './extract.js';
export { packDirectory, IGNORE_FILE, type PackOptions } from './pack.js';
export { compileIgnore, parseIgnoreFile, type IgnoreMatcher } from './ignore.js';
