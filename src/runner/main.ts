/** Entry point of the runner daemon. Its service lands with issue #4 ("Serve apps end to end"). */
import { PierError } from '../core/errors.js';

export async function main(_configFile: string, _env: NodeJS.ProcessEnv): Promise<void> {
  throw new PierError('PIER_ILLEGAL_STATE', 'the runner daemon is not part of this version yet');
}
