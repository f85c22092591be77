/**
 * For `--compiled`: transpiles node/src (no type check, TypeScript's transpileModule) into
 * node_modules/.cache/paxos-bench (inside the repo so that packages resolve, and where
 * linters and test runners do not look) so that the nodes can run as plain `node main.js`, without tsx's loader
 * thread and on-the-fly compilation in the process (which add memory and start-up CPU).
 */
import { mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import ts from 'typescript';

/** Transpiles `<root>/node/src` to `<root>/node_modules/.cache/paxos-bench/node/src`; returns the main.js path. */
export function compileNode(root: string): string {
  const src = join(root, 'node', 'src');
  const out = join(root, 'node_modules', '.cache', 'paxos-bench');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  // below node_modules the package scope stops: say ESM here
  writeFileSync(join(out, 'package.json'), '{ "type": "module", "private": true }\n');
  const files = (readdirSync(src, { recursive: true, encoding: 'utf8' }) as string[]).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('.d.ts'));
  for (const f of files) {
    const file = join(src, f);
    const res = ts.transpileModule(readFileSync(file, 'utf8'), {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true, sourceMap: false },
    });
    const dest = join(out, 'node', 'src', f.replace(/\.ts$/, '.js'));
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, res.outputText);
  }
  // proto.ts finds the .proto files at ../../../proto relative to itself
  symlinkSync(relative(out, join(root, 'proto')), join(out, 'proto'));
  return join(out, 'node', 'src', 'main.js');
}
