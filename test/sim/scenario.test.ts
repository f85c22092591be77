import { describe, expect, it } from '@jest/globals';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runScenario } from './scenario.js';

const dir = join(dirname(fileURLToPath(import.meta.url)), 'scenarios');
const files = readdirSync(dir).filter((f) => f.endsWith('.txt')).sort();

/** Each scenario's output must match its golden text; `UPDATE_GOLDEN=1` rewrites the files instead. */
describe('scenarios', () => {
  it('has scenarios', () => expect(files.length).toBeGreaterThan(0));
  for (const file of files) {
    it(file, async () => {
      const path = join(dir, file);
      const expected = readFileSync(path, 'utf8');
      const actual = await runScenario(expected);
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(path, actual);
      else expect(actual).toBe(expected);
    });
  }
});
