/** Parsing of the simulator's command line (see cli.ts); kept apart so that tests can import it. */

/** The simulator's command-line flags. */
export interface Flags {
  seeds: number;
  start: number;
  seed: number | undefined;
  json: boolean;
  unsafe: boolean;
  splitBrain: boolean;
  amnesia: 'protected' | 'unprotected' | undefined;
}

/** One line of usage, printed with a bad flag. */
export const USAGE = 'usage: npm run sim -- [--seeds N] [--start S] [--seed S] [--json] [--unsafe-plain-majorities] [--split-brain] [--amnesia protected|unprotected]';

/** Parses argv; returns an error message for anything it does not understand. */
export function parseFlags(argv: readonly string[]): Flags | string {
  const flags: Flags = { seeds: 100, start: 1, seed: undefined, json: false, unsafe: false, splitBrain: false, amnesia: undefined };
  const number = (name: string, value: string | undefined, min: number): number | string => {
    if (value === undefined || !/^\d+$/.test(value)) return `${name} needs a whole number, got ${value ?? 'nothing'}`;
    const n = Number(value);
    return n < min ? `${name} must be at least ${min}` : n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const [name, inline] = arg.includes('=') ? (arg.split('=', 2) as [string, string]) : [arg, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (name) {
      case '--seeds':
      case '--start':
      case '--seed': {
        const n = number(name, value(), name === '--seeds' ? 1 : 0);
        if (typeof n === 'string') return n;
        if (name === '--seeds') flags.seeds = n;
        else if (name === '--start') flags.start = n;
        else flags.seed = n;
        break;
      }
      case '--json':
        flags.json = true;
        break;
      case '--unsafe-plain-majorities':
        flags.unsafe = true;
        break;
      case '--split-brain':
        flags.splitBrain = true;
        break;
      case '--amnesia': {
        const mode = value();
        if (mode !== 'protected' && mode !== 'unprotected') return `--amnesia needs protected or unprotected, got ${mode ?? 'nothing'}`;
        flags.amnesia = mode;
        break;
      }
      default:
        return `unknown flag ${arg}`;
    }
    if (inline !== undefined && !['--seeds', '--start', '--seed', '--amnesia'].includes(name)) return `${name} takes no value`;
  }
  return flags;
}

