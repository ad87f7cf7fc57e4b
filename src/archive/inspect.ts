/** Validates a release archive without writing anything: the check the API runs before storing an upload. */
import { ValidationError } from '../core/errors.js';
import { ArchiveTree, type ArchiveEntry } from './entry-policy.js';
import { formatBytes, resolveLimits, type ArchiveLimits } from './limits.js';
import { overheadBytes, readTarGz, type EntryHandler } from './tar-reader.js';

/** What a valid archive holds. */
export interface ArchiveSummary {
  /** Accepted entries in archive order, normalized. */
  entries: ArchiveEntry[];
  /** Sum of file contents once unpacked (hard links count as the copies they become). */
  totalBytes: number;
}

/**
 * Reads a whole tar.gz and applies every rule (see `ArchiveTree`) without writing anything; `onAccepted` sees
 * each accepted entry (and may read its body).
 * @throws ValidationError naming the first offending entry, or the archive-level problem.
 */
export async function inspectArchive(bytes: Uint8Array, limits: Partial<ArchiveLimits> = {}, onAccepted: AcceptedHandler = async () => undefined): Promise<ArchiveSummary> {
  const tree = await walkArchive(bytes, resolveLimits(limits), onAccepted);
  return { entries: tree.entries, totalBytes: tree.totalBytes };
}

/** Called for each entry that passed the rules, with the folders it brings into being (parents first). */
export type AcceptedHandler = (entry: ArchiveEntry, body: Parameters<EntryHandler>[1], newDirs: readonly string[]) => Promise<void>;

/**
 * Runs the shared rules over an archive, calling `onAccepted` for each entry that passed them. The nexus's upload
 * check and the runner's unpacker both come through here, so they enforce the same limits in the same linear time.
 */
export async function walkArchive(bytes: Uint8Array, limits: ArchiveLimits, onAccepted: AcceptedHandler): Promise<ArchiveTree> {
  if (bytes.length > limits.maxArchiveBytes) {
    throw new ValidationError(`archive is ${formatBytes(bytes.length)}, over the ${formatBytes(limits.maxArchiveBytes)} limit`, {
      details: { limit: 'maxArchiveBytes' },
    });
  }
  const tree = new ArchiveTree(limits);
  // Every byte that can come out is accounted for by a limit; this cap only backs that reasoning up.
  const maxInflatedBytes = limits.maxBytes + overheadBytes(limits.maxEntries);
  await readTarGz(bytes, { maxInflatedBytes, maxPathBytes: limits.maxPathBytes }, async (raw, body) => {
    const accepted = tree.add(raw);
    if (accepted) await onAccepted(accepted.entry, body, accepted.newDirs);
  });
  tree.finish();
  return tree;
}
