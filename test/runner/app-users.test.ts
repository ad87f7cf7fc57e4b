/**
 * AppUsers with real `useradd`/`userdel` (the runner is root here, as in production): the user a start gets is
 * one the system holds at that moment, even when a clean-up here, or another runner on this machine, deletes the
 * name's user around it.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { AppUsers, appUserName } from '../../src/runner/app-users.js';

const run = promisify(execFile);
const made: string[] = [];

async function uidOf(app: string): Promise<number | undefined> {
  try {
    const { stdout } = await run('getent', ['passwd', appUserName(app)]);
    return Number(stdout.split(':')[2]);
  } catch {
    return undefined;
  }
}

function newApp(): string {
  const app = `au-${randomId(3)}`;
  made.push(app);
  return app;
}

afterEach(async () => {
  for (const app of made.splice(0)) await new AppUsers().remove(app);
});

describe('AppUsers', () => {
  it('gives an existing user after another runner on this machine deleted the one it gave before', async () => {
    const users = new AppUsers();
    const app = newApp();
    const first = await users.ensure(app);
    expect(await uidOf(app)).toBe(first.uid);
    await run('userdel', [appUserName(app)]); // another runner's clean-up of the destroyed app
    expect(await uidOf(app)).toBeUndefined();
    const again = await users.ensure(app);
    expect(await uidOf(app)).toBe(again.uid);
  });

  it('never gives the user a removal under way deletes: a start asked during the removal gets a fresh one', async () => {
    const users = new AppUsers();
    const app = newApp();
    await users.ensure(app);
    const removal = users.remove(app);
    const started = users.ensure(app); // an instance start of the re-created app, during the clean-up
    expect(await removal).toBe(true);
    const user = await started;
    expect(await uidOf(app)).toBe(user.uid);
  });
});
