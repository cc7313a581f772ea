/**
 * The characters that must never reach a reader raw from stored text (agents write it): C0
 * (ESC, BEL, CR, …) and DEL, C1 (8-bit CSI, OSC, ST), and the invisible direction and line
 * controls (LRM/RLM, U+2028/U+2029, bidi embeddings, overrides and isolates: "trojan source").
 * The CLI shows each as a visible escape (cli/escape.ts); the brief flattens them (ops/prime.ts).
 */
export const CONTROL_CHARS = '\\u0000-\\u001f\\u007f-\\u009f\\u200e\\u200f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069';
