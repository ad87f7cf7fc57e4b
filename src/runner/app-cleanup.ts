/**
 * Makes a destroyed app gone from this machine, so whoever creates its name next inherits nothing: on
 * `app.destroyed`, and for any app a snapshot no longer lists (a runner that was down during the destroy), it
 * stops the app's instances, kills every process of its user (a worker or a double-forked daemon that escaped its
 * vassal included), removes its release folder, HOMEs and vassal log folders (as the app's user, then what is
 * left as root), what the user left in /tmp, /var/tmp and /dev/shm, the cached artifacts no release here uses any
 * more, and finally deletes the `p-<app>` user, so a re-created app gets a fresh one.
 *
 * Each app this runner runs is recorded in `<runner>/apps/<app>.json` (root's only): the user's uid/gid and the
 * app's creation time. The record is the runner's claim on that user: a snapshot that lists no such app, or lists
 * a re-created app of that name (another creation time), has its old files purged here.
 */
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { App } from '../protocol/index.js';
import { randomId } from '../core/ids.js';
import { KeyedQueue } from '../core/keyed-queue.js';
import { killAllOf, removeAfterKill, removeOwnedEntry, removeScratchOf, type FileOwner } from './app-files.js';
import type { AppUser, AppUsers } from './app-users.js';
import type { Emperor } from './emperor.js';
import type { InstanceManager } from './instance-manager.js';

export interface AppCleanupOptions {
  /** The runner's folder (releases/, artifacts/, homes/, apps/ under it). */
  dir: string;
  emperor: Emperor;
  /** Per-app users (the runner is root); without them there are no users or processes to end. */
  appUsers?: AppUsers;
  homesDir?: string;
  log: Logger;
}

interface AppRecord {
  app: string;
  uid: number;
  gid: number;
  /** The app's creation time (ms since the epoch), 0 when unknown. */
  createdAt: number;
}

const APP_FILE = /^([a-z][a-z0-9-]{0,39})\.json$/;
/** An instance's name is `<app>-v<version>-<hex>`: what precedes the last `-v<N>-<hex>` is its app. */
const INSTANCE = /^([a-z][a-z0-9-]*)-v\d+-[0-9a-f]+$/;

export class AppCleanup {
  private manager: InstanceManager | undefined;
  private readonly createdAt = new Map<string, number>();
  /** Clean-ups of one name run one after another. */
  private readonly pending = new KeyedQueue();
  private readonly log: Logger;

  constructor(private readonly options: AppCleanupOptions) {
    this.log = options.log.child({ component: 'runner.app-cleanup' });
  }

  private get recordsDir(): string {
    return join(this.options.dir, 'apps');
  }

  /** The instance manager whose instances of a destroyed app are stopped first. */
  attach(manager: InstanceManager): void {
    this.manager = manager;
  }

  /** Notes an app's creation time (from a snapshot or its `app.created` event). */
  created(app: string, createdAt: number): void {
    this.createdAt.set(app, createdAt);
  }

  /**
   * Called before an instance of `app` starts: waits out a clean-up of that name under way, then records that this
   * runner runs the app as `user`.
   */
  async beforeStart(app: string, user: AppUser | undefined): Promise<void> {
    await this.pending.settled(app);
    if (!user) return;
    const record: AppRecord = { app, uid: user.uid, gid: user.gid, createdAt: this.createdAt.get(app) ?? 0 };
    const existing = await this.readRecord(app);
    if (existing && existing.uid === record.uid && existing.createdAt === record.createdAt) return;
    await mkdir(this.recordsDir, { recursive: true, mode: 0o700 });
    const tmp = join(this.recordsDir, `.${app}.${randomId()}.tmp`);
    await writeFile(tmp, JSON.stringify(record), { mode: 0o600 });
    await rename(tmp, join(this.recordsDir, `${app}.json`));
  }

  /** The app was destroyed: purge it here (in the background; a new instance of the name waits for it). */
  destroyed(app: string): Promise<void> {
    this.createdAt.delete(app);
    return this.enqueue(app, () => this.purge(app));
  }

  /**
   * After a snapshot: purges every app this runner holds files of that the snapshot does not list, and the old
   * files of an app whose name was destroyed and created again meanwhile. Resolves when done.
   */
  async sweep(apps: readonly App[]): Promise<void> {
    const live = new Map(apps.map((a) => [a.name, a.createdAt]));
    for (const [name, createdAt] of live) this.createdAt.set(name, createdAt);
    const records = await this.readRecords();
    const held = new Set([...records.keys(), ...(await this.heldNames())]);
    const work: Array<Promise<void>> = [];
    for (const app of held) {
      const createdAt = live.get(app);
      const record = records.get(app);
      if (createdAt === undefined) {
        work.push(this.enqueue(app, () => this.purge(app, record)));
      } else if (record && record.createdAt !== 0 && record.createdAt !== createdAt) {
        // The name was destroyed and created again while this runner was away: the old app goes all the same (its
        // user too, when it is still the recorded one), and the new app gets a fresh user.
        work.push(this.enqueue(app, () => this.purge(app, record)));
      }
    }
    await Promise.all(work);
  }

  /** Resolves when every clean-up started so far is over. */
  async idle(): Promise<void> {
    await this.pending.idle();
  }

  /** Runs clean-ups of one name one after another; the promise never rejects (failures are logged). */
  private enqueue(app: string, job: () => Promise<void>): Promise<void> {
    return this.pending.run(app, job).catch((err) => this.log.error({ err, app }, 'cannot clean up a destroyed app'));
  }

  private async purge(app: string, known?: AppRecord): Promise<void> {
    const started = Date.now();
    if (known) {
      const current = await this.readRecord(app);
      if (current && current.createdAt !== known.createdAt) {
        // A newer app of the name recorded itself here after this job was queued (it waited for the clean-ups
        // queued before it): the uid may be reused, so the old record must not end the new app's user or processes.
        this.log.info({ app }, 'the name belongs to a newer app since this clean-up was queued; leaving it');
        return;
      }
    }
    await this.manager?.stopApp(app);
    const { appUsers } = this.options;
    const user = appUsers ? await appUsers.lookup(app) : undefined;
    const record = known ?? (await this.readRecord(app));
    // Only an app this runner ran is its to end (another runner on this machine may run the name otherwise).
    if (!record && !(await this.heldNames()).includes(app)) return;
    // A uid is the old app's only while the user of its name still holds it: once another runner on this machine
    // deleted the user, the uid may already be a new app's, and killing or deleting by it would hit that app. Then
    // only this runner's folders go, each as whoever owns it.
    const isStillItsUser = !!user && (!record || record.uid === user.uid);
    const owner: FileOwner | undefined = isStillItsUser ? user : undefined;
    let isKilled = true;
    if (owner && appUsers) {
      isKilled = await killAllOf(owner);
      if (!isKilled) this.log.error({ app, uid: owner.uid }, 'processes of a destroyed app keep running after repeated SIGKILLs');
    }
    if (record && !isStillItsUser) await this.removeFoldersByOwner(app);
    else await this.removeFolders(app, owner);
    if (owner && appUsers) await removeScratchOf(owner);
    if (appUsers && user && (!record || record.uid === user.uid) && isKilled) {
      await appUsers.remove(app);
    }
    await rm(join(this.recordsDir, `${app}.json`), { force: true });
    await this.removeUnusedArtifacts();
    this.log.info({ app, uid: owner?.uid, durationMs: Date.now() - started }, 'destroyed app cleaned up');
  }

  /** The app's release folder, and the HOMEs and vassal log folders of its instances. */
  private async removeFolders(app: string, owner: FileOwner | undefined): Promise<void> {
    await removeAfterKill(owner, join(this.options.dir, 'releases', app));
    const { emperor, homesDir } = this.options;
    for (const name of await emperor.listLogFolders()) {
      if (appOfInstance(name) === app) await removeAfterKill(owner, join(emperor.logDir, name));
    }
    if (homesDir) {
      for (const name of await listNames(homesDir)) {
        if (appOfInstance(name) === app) await removeAfterKill(owner, join(homesDir, name));
      }
    }
  }

  /** The same folders when the app's uid cannot be trusted any more: each removed as its own owner, never by root's walk. */
  private async removeFoldersByOwner(app: string): Promise<void> {
    const { emperor, homesDir } = this.options;
    const folders = [join(this.options.dir, 'releases', app)];
    for (const name of await emperor.listLogFolders()) if (appOfInstance(name) === app) folders.push(join(emperor.logDir, name));
    if (homesDir) for (const name of await listNames(homesDir)) if (appOfInstance(name) === app) folders.push(join(homesDir, name));
    for (const folder of folders) {
      if (!(await removeOwnedEntry(folder))) this.log.warn({ app, folder }, 'cannot remove a folder of a destroyed app: its owner keeps writing into it');
    }
  }

  /** Cached artifacts whose release folder is gone (release folders are named by the sha256's first 16 digits). */
  private async removeUnusedArtifacts(): Promise<void> {
    const used = new Set<string>();
    const releases = join(this.options.dir, 'releases');
    for (const app of await listNames(releases)) for (const sha of await listNames(join(releases, app))) used.add(sha);
    const artifacts = join(this.options.dir, 'artifacts');
    for (const file of await listNames(artifacts)) {
      const match = /^([0-9a-f]{64})\.tar\.gz$/.exec(file);
      if (match && !used.has(match[1]!.slice(0, 16))) await rm(join(artifacts, file), { force: true });
    }
  }

  /** Apps this runner holds folders of: release folders, and the apps of HOMEs and vassal log folders. */
  private async heldNames(): Promise<string[]> {
    const names = await listNames(join(this.options.dir, 'releases'));
    const instances = [...(await this.options.emperor.listLogFolders()), ...(this.options.homesDir ? await listNames(this.options.homesDir) : [])];
    for (const name of instances) {
      const app = appOfInstance(name);
      if (app) names.push(app);
    }
    return names;
  }

  private async readRecords(): Promise<Map<string, AppRecord>> {
    const records = new Map<string, AppRecord>();
    for (const file of await listNames(this.recordsDir)) {
      const match = APP_FILE.exec(file);
      const record = match ? await this.readRecord(match[1]!) : undefined;
      if (record) records.set(record.app, record);
    }
    return records;
  }

  private async readRecord(app: string): Promise<AppRecord | undefined> {
    try {
      const record = JSON.parse(await readFile(join(this.recordsDir, `${app}.json`), 'utf8')) as AppRecord;
      return Number.isInteger(record.uid) && Number.isInteger(record.gid) && record.uid > 0 ? { ...record, app } : undefined;
    } catch {
      return undefined;
    }
  }
}

/** The app an instance's folder belongs to, from its name; undefined for any other name. */
export function appOfInstance(name: string): string | undefined {
  return INSTANCE.exec(name)?.[1];
}

async function listNames(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((name) => !name.startsWith('.'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}
