/** pier tokens:rotate: replace an API token; when it is the CLI's own, the file it came from is rewritten too. */
import type { Command } from 'commander';
import { PierError } from '../../core/errors.js';
import type { RotateTokenReply } from '../../protocol/api.js';
import { replaceStoredToken } from '../credentials.js';
import { checkAppName, type CliContext } from '../context.js';
import { print, printJson } from '../output.js';
import { action, jsonOption } from './shared.js';

export function registerTokenCommands(program: Command, ctx: CliContext): void {
  jsonOption(
    program
      .command('tokens:rotate')
      .description('replace your API token (operators: --owner NAME for anyone\'s); the old token stops working at once')
      .option('--owner <name>', "the owner whose token to replace (operators only; default: yours)"),
  ).action(
    action(ctx, async (opts: { owner?: string; json?: boolean }) => {
      const owner = opts.owner === undefined ? undefined : checkAppName(opts.owner, 'owner name');
      const api = ctx.api();
      const credentials = ctx.credentials();
      const isOwn = owner === undefined || (await api.get<{ owner: string }>('/v1/status')).owner === owner;
      const rotated = await api.post<RotateTokenReply>('/v1/tokens/rotate', owner === undefined ? {} : { owner });
      // The CLI's own token came from a file: put the new one there, or this CLI is locked out from now on.
      const file = isOwn && credentials.source !== 'PIER_TOKEN' ? credentials.source : undefined;
      let saveError: string | undefined;
      if (file) {
        try {
          replaceStoredToken(file, rotated.token);
        } catch (err) {
          saveError = (err as Error).message;
        }
      }
      if (opts.json) printJson({ ...rotated, savedIn: saveError === undefined ? file ?? null : null });
      else {
        print(`rotated the API token of '${rotated.owner}'; the old token is refused from now on`);
        if (file && saveError === undefined) print(`saved the new token in ${file}, so this CLI keeps working`);
        if (isOwn && credentials.source === 'PIER_TOKEN') print('PIER_TOKEN still holds the old token: set it to the new one');
        print('new API token (shown once):');
        print(rotated.token);
      }
      if (saveError !== undefined) {
        throw new PierError('PIER_INTERNAL', `the new token is printed above, but saving it in ${file} failed (${saveError}); run 'pier login URL --token TOKEN' with it`);
      }
    }),
  );
}
