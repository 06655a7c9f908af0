import type { IncomingMessage } from 'node:http';
import { HttpError } from './http-error.js';

/**
 * Read the whole body, refusing (413) anything over `limit` bytes, and parse it as JSON.
 * Past the limit the rest is discarded rather than the socket destroyed, so the client
 * still receives the 413 (closing on an unread body makes the kernel reset the connection).
 */
export function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.resume();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      const text = Buffer.concat(chunks, size).toString('utf8');
      if (text.trim() === '') return reject(new HttpError(400, 'invalid_json', 'request body is empty; send JSON'));
      try {
        resolve(JSON.parse(text));
      } catch (e) {
        reject(new HttpError(400, 'invalid_json', `request body is not valid JSON: ${(e as Error).message}`));
      }
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e);
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

function tooLarge(limit: number): HttpError {
  return new HttpError(413, 'payload_too_large', `request body exceeds ${limit} bytes; send smaller batches`);
}
