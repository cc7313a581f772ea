import { describe, expect, it } from 'vitest';
import { plainMcpFlags } from '../src/cli/entry.js';
import { buildProgram } from '../src/cli/main.js';

/**
 * entry.ts reads a plain `baton mcp` command line itself, without building the command line
 * (cold start, issue 11). What it takes must be exactly what the command line makes of the same
 * arguments; anything it is not sure of goes to the command line.
 */
async function commanderFlags(args: string[]): Promise<Record<string, unknown>> {
  const program = buildProgram('mcp');
  let seen: Record<string, unknown> | undefined;
  program.commands.find((c) => c.name() === 'mcp')!.action((opts: Record<string, unknown>) => {
    seen = { ...opts };
  });
  await program.parseAsync(['node', 'baton', 'mcp', ...args]);
  return seen!;
}

describe('baton mcp flags read without the command line', () => {
  it('take what commander takes, for every shape they accept', async () => {
    const accepted = [
      [],
      ['--data', 'd'],
      ['--data=d'],
      ['--config', 'c.json'],
      ['--config=c.json', '--data', 'a b'],
      ['--data', '/x/y', '--config', '/c.json'],
      ['--data=x=y'],
      ['--data', 'd\nline'],
    ];
    for (const args of accepted) {
      const plain = plainMcpFlags(args);
      expect(plain, args.join(' ')).not.toBeNull();
      expect(plain).toEqual(await commanderFlags(args));
    }
  });

  it('leave everything else to commander', () => {
    const left = [
      ['--help'],
      ['-h'],
      ['--store', 'postgres://x'],
      ['--data', 'a', '--data', 'b'],
      ['--data'],
      ['--data='],
      ['--data', '--config'],
      ['--data', '-x'],
      ['extra'],
      ['--bogus'],
      ['--Data', 'd'],
      ['--data-dir', 'd'],
    ];
    for (const args of left) expect(plainMcpFlags(args), args.join(' ')).toBeNull();
  });
});
