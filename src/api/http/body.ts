import type { IncomingMessage } from 'node:http';
import { BatonError } from '../../core/errors.js';

/** Reads a request body up to `limit` bytes; over it, refuses with `body_too_large` (HTTP 413). */
export function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    return Promise.reject(new BatonError('body_too_large', `request body exceeds ${limit} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new BatonError('body_too_large', `request body exceeds ${limit} bytes`));
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
    // A client that leaves (or is cut off by the body deadline) mid-body settles the read, so
    // nothing waits on a body that will never come.
    req.on('close', () => {
      if (!req.complete) reject(new BatonError('invalid_input', 'request body incomplete'));
    });
  });
}

/** JSON.parse with a nesting limit checked first, so hostile deep JSON never reaches the parser. */
export function parseJson(text: string, maxDepth = 32): unknown {
  if (openersAtMost(text, maxDepth)) return parseOrRefuse(text);
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++; // backslash: skip the escaped char
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > maxDepth) throw new BatonError('invalid_input', `JSON nested deeper than ${maxDepth} levels`);
    } else if (c === 125 || c === 93) depth--;
  }
  return parseOrRefuse(text);
}

function parseOrRefuse(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new BatonError('invalid_input', 'body is not valid JSON');
  }
}

/**
 * No more than `max` `{` and `[` in the whole text (strings included), so no nesting can exceed
 * `max`: a typical request body (a handful of brackets) skips the character-by-character scan.
 */
function openersAtMost(text: string, max: number): boolean {
  let n = 0;
  for (const opener of ['{', '[']) {
    for (let i = text.indexOf(opener); i !== -1; i = text.indexOf(opener, i + 1)) if (++n > max) return false;
  }
  return true;
}
