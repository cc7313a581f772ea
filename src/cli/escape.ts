import { CONTROL_CHARS } from '../core/text.js';
/**
 * What the CLI prints of stored text, made inert for a terminal. Agents write task titles,
 * approval actions, messages; a human reads them in a terminal, where an ESC sequence can
 * recolour, hide or rewrite what is shown, move the cursor over earlier lines, set the title, or
 * (OSC 52) write the clipboard. So every control character is shown as a visible escape:
 * - C0 (U+0000–U+001F, ESC and BEL included) and DEL, except `\n` and `\t` where a caller keeps
 *   them;
 * - C1 (U+0080–U+009F: 8-bit CSI, OSC, ST, which some terminals obey in UTF-8 too);
 * - the invisible direction and line controls (bidi embeddings, overrides and isolates, LRM/RLM,
 *   U+2028/U+2029), which reorder what a reader sees ("trojan source").
 */
const LINE_CONTROL = new RegExp(`[${CONTROL_CHARS}]`, 'g');
/** What JSON.stringify leaves raw (it escapes U+0000–U+001F itself). */
const JSON_CONTROL = /[\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const hex = (c: string): string => {
  const code = c.charCodeAt(0);
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
};

/** Stored text for one line of output: every control character (newline and tab too) escaped. */
export function printable(text: string): string {
  return text.replace(LINE_CONTROL, hex);
}

/**
 * JSON for a terminal or a pipe: still valid JSON (the same value parses back), with the
 * characters JSON.stringify leaves raw written as `\uXXXX` escapes.
 */
export function terminalJson(value: unknown, indent?: number): string {
  return (JSON.stringify(value, null, indent) ?? 'null').replace(JSON_CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
