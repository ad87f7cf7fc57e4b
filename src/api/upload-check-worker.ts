/**
 * Worker-thread entry of the upload checker: runs `checkUpload` on each archive it is sent and hands the bytes
 * back (transferred, never copied) with the summary or the error. Started by UploadChecker only.
 */
import { parentPort } from 'node:worker_threads';
import { PierError } from '../core/errors.js';
import { checkUpload } from './archive-check.js';
import { WORKER_READY, type CheckReply, type CheckRequest } from './upload-checker.js';

const port = parentPort;
if (!port) throw new Error('upload-check-worker runs only as a worker thread');

port.on('message', (request: CheckRequest) => {
  void answer(request).then((reply) => port.postMessage(reply, [reply.bytes.buffer as ArrayBuffer]));
});
port.postMessage(WORKER_READY);

async function answer({ id, bytes, maxArchiveBytes }: CheckRequest): Promise<CheckReply> {
  try {
    return { id, bytes, ...(await checkUpload(bytes, maxArchiveBytes)) };
  } catch (err) {
    if (err instanceof PierError) return { id, bytes, error: { code: err.code, message: err.message, details: err.details } };
    return { id, bytes, error: { code: 'PIER_INTERNAL', message: err instanceof Error ? (err.stack ?? err.message) : String(err) } };
  }
}
