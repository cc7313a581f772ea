/** POSIX sh single quoting (hook and helper commands run in a shell): the value holds nothing the shell interprets. */
export const sq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
