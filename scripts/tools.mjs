#!/usr/bin/env node
// Builds the Kubernetes test tools (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kubectl, kubelet, kube-proxy, CoreDNS, BuildKit, crictl, helm) from the pinned
// Go wrapper modules under test/k8s/tools/, and the benchmark's Go load generator (bench/loadgen),
// into a git-ignored cache folder (<repo>/.tools/bin).
//
// Usage:
//   node scripts/tools.mjs build        build whatever is missing or out of date
//   node scripts/tools.mjs path         print the folder holding the binaries
//   node scripts/tools.mjs which NAME   print the path of one binary
//   node scripts/tools.mjs status       show each binary and whether it is current
//
// A binary is rebuilt only when its pins change: the stamp is a hash of the wrapper
// module's go.mod, go.sum and *.go files, the Go version and the ldflags.
//
// Overrides (used instead of building):
//   KUBEBUILDER_ASSETS          folder with etcd, kube-apiserver, kubectl
//   TEST_ASSET_ETCD             path of an etcd binary
//   TEST_ASSET_KUBE_APISERVER   path of a kube-apiserver binary
//   TEST_ASSET_KUBECTL          path of a kubectl binary
//   TEST_ASSET_KUBE_CONTROLLER_MANAGER, TEST_ASSET_KUBE_SCHEDULER, TEST_ASSET_HELM,
//   TEST_ASSET_KUBELET, TEST_ASSET_KUBE_PROXY, TEST_ASSET_COREDNS, TEST_ASSET_BUILDKITD,
//   TEST_ASSET_BUILDCTL, TEST_ASSET_CRICTL, TEST_ASSET_BENCH_LOADGEN  (same idea)
// Overridden binaries are symlinked into the bin folder so `path` stays one folder.
//
// Other knobs: TOOLS_BIN_DIR (default <repo>/.tools/bin), TOOLS_GO_P (go build -p,
// default 2), GO (go binary, default "go").

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
  openSync,
  closeSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import process from 'node:process';
import { clearInterval, setInterval, setTimeout } from 'node:timers';
import { fileURLToPath } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TOOLS_SRC = join(REPO, 'test', 'k8s', 'tools');
const BIN_DIR = resolve(process.env.TOOLS_BIN_DIR ?? join(REPO, '.tools', 'bin'));
const STAMP_DIR = join(BIN_DIR, '.stamps');
const GO = process.env.GO ?? 'go';
const GO_P = process.env.TOOLS_GO_P ?? '2';
// Bump when the way binaries are built changes, to force a rebuild.
const SCRIPT_REV = '1';

/** Reads the version a module requires from a go.mod file. */
function requiredVersion(modDir, modulePath) {
  const text = readFileSync(join(TOOLS_SRC, modDir, 'go.mod'), 'utf8');
  const esc = modulePath.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const m = text.match(new RegExp(`(?:^|\\s)${esc}\\s+(v[0-9][^\\s]*)`, 'm'));
  if (!m) throw new Error(`cannot find ${modulePath} in test/k8s/tools/${modDir}/go.mod`);
  return m[1];
}

function kubeLdflags() {
  const v = requiredVersion('kubernetes', 'k8s.io/kubernetes');
  const [, major, minor] = v.match(/^v(\d+)\.(\d+)\./) ?? [];
  const flags = [];
  for (const pkg of ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version']) {
    flags.push(
      `-X ${pkg}.gitVersion=${v}`,
      `-X ${pkg}.gitMajor=${major}`,
      `-X ${pkg}.gitMinor=${minor}`,
      `-X ${pkg}.gitTreeState=clean`,
      `-X ${pkg}.buildDate=1970-01-01T00:00:00Z`,
    );
  }
  return flags;
}

/** buildkitd and buildctl report the pinned BuildKit version. */
function buildkitLdflags() {
  return [`-X github.com/moby/buildkit/version.Version=${requiredVersion('buildkit', 'github.com/moby/buildkit')}`];
}

/** The binaries, in build order (smallest first so something is usable early). */
const TOOLS = [
  {
    name: 'etcd',
    module: 'etcd',
    pkg: '.',
    env: 'TEST_ASSET_ETCD',
    kubebuilder: true,
    ldflags: () => {
      const v = requiredVersion('etcd', 'go.etcd.io/etcd/server/v3');
      return [`-X go.etcd.io/etcd/api/v3/version.GitSHA=${v}`];
    },
  },
  {
    // The benchmark's load generator (etcd's Go client, and a gRPC client of our proto).
    name: 'bench-loadgen',
    module: 'loadgen',
    dir: join(REPO, 'bench', 'loadgen'),
    pkg: '.',
    env: 'TEST_ASSET_BENCH_LOADGEN',
    kubebuilder: false,
    ldflags: () => [],
  },
  {
    name: 'kube-apiserver',
    module: 'kubernetes',
    pkg: 'k8s.io/kubernetes/cmd/kube-apiserver',
    env: 'TEST_ASSET_KUBE_APISERVER',
    kubebuilder: true,
    ldflags: kubeLdflags,
  },
  {
    name: 'kube-controller-manager',
    module: 'kubernetes',
    pkg: 'k8s.io/kubernetes/cmd/kube-controller-manager',
    env: 'TEST_ASSET_KUBE_CONTROLLER_MANAGER',
    kubebuilder: false,
    ldflags: kubeLdflags,
  },
  {
    name: 'kube-scheduler',
    module: 'kubernetes',
    pkg: 'k8s.io/kubernetes/cmd/kube-scheduler',
    env: 'TEST_ASSET_KUBE_SCHEDULER',
    kubebuilder: false,
    ldflags: kubeLdflags,
  },
  {
    name: 'kubectl',
    module: 'kubernetes',
    pkg: 'k8s.io/kubernetes/cmd/kubectl',
    env: 'TEST_ASSET_KUBECTL',
    kubebuilder: true,
    ldflags: kubeLdflags,
  },
  {
    name: 'kubelet',
    module: 'kubernetes',
    pkg: 'k8s.io/kubernetes/cmd/kubelet',
    env: 'TEST_ASSET_KUBELET',
    kubebuilder: false,
    ldflags: kubeLdflags,
  },
  {
    name: 'kube-proxy',
    module: 'kubernetes',
    pkg: 'k8s.io/kubernetes/cmd/kube-proxy',
    env: 'TEST_ASSET_KUBE_PROXY',
    kubebuilder: false,
    ldflags: kubeLdflags,
  },
  {
    name: 'coredns',
    module: 'coredns',
    pkg: 'github.com/coredns/coredns',
    env: 'TEST_ASSET_COREDNS',
    kubebuilder: false,
    ldflags: () => [],
  },
  {
    name: 'buildctl',
    module: 'buildkit',
    pkg: 'github.com/moby/buildkit/cmd/buildctl',
    env: 'TEST_ASSET_BUILDCTL',
    kubebuilder: false,
    ldflags: buildkitLdflags,
  },
  {
    name: 'buildkitd',
    module: 'buildkit',
    pkg: 'github.com/moby/buildkit/cmd/buildkitd',
    env: 'TEST_ASSET_BUILDKITD',
    kubebuilder: false,
    ldflags: buildkitLdflags,
  },
  {
    name: 'crictl',
    module: 'cri-tools',
    pkg: 'sigs.k8s.io/cri-tools/cmd/crictl',
    env: 'TEST_ASSET_CRICTL',
    kubebuilder: false,
    ldflags: () => {
      const v = requiredVersion('cri-tools', 'sigs.k8s.io/cri-tools');
      return [`-X sigs.k8s.io/cri-tools/pkg/version.Version=${v}`];
    },
  },
  {
    name: 'helm',
    module: 'helm',
    pkg: 'helm.sh/helm/v3/cmd/helm',
    env: 'TEST_ASSET_HELM',
    kubebuilder: false,
    ldflags: () => {
      const v = requiredVersion('helm', 'helm.sh/helm/v3');
      return [`-X helm.sh/helm/v3/internal/version.version=${v}`];
    },
  },
];

function log(msg) {
  process.stderr.write(`[tools] ${msg}\n`);
}

let goVersionCache;
function goVersion() {
  if (goVersionCache) return goVersionCache;
  const r = spawnSync(GO, ['env', 'GOVERSION'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot run "${GO} env GOVERSION": ${r.stderr || r.error}`);
  goVersionCache = r.stdout.trim();
  return goVersionCache;
}

/** The folder of a tool's Go module. */
function toolDir(tool) {
  return tool.dir ?? join(TOOLS_SRC, tool.module);
}

/** Hash of everything that determines the output of a tool's build. */
function stampFor(tool) {
  const h = createHash('sha256');
  h.update(`rev=${SCRIPT_REV}\ngo=${goVersion()}\npkg=${tool.pkg}\n`);
  h.update(`ldflags=${tool.ldflags().join(' ')}\n`);
  const dir = toolDir(tool);
  const files = readdirSync(dir)
    .filter((f) => f === 'go.mod' || f === 'go.sum' || f.endsWith('.go'))
    .sort();
  for (const f of files) {
    h.update(`file=${f}\n`);
    h.update(readFileSync(join(dir, f)));
  }
  return h.digest('hex');
}

/** The override path for a tool from the environment, or undefined. */
function overrideFor(tool) {
  const direct = process.env[tool.env];
  if (direct) return resolve(direct);
  const kb = process.env.KUBEBUILDER_ASSETS;
  if (kb && tool.kubebuilder) return resolve(kb, tool.name);
  return undefined;
}

function isSymlink(p) {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

function parked(tool) {
  return join(BIN_DIR, `.${tool.name}.built`);
}

/** Points BIN_DIR/<name> at override binaries (and drops stale override links). */
function syncOverrides() {
  mkdirSync(BIN_DIR, { recursive: true });
  for (const tool of TOOLS) {
    const target = join(BIN_DIR, tool.name);
    const ov = overrideFor(tool);
    if (ov) {
      if (!existsSync(ov)) throw new Error(`${tool.name}: override ${ov} does not exist`);
      if (isSymlink(target) && readlinkSync(target) === ov) continue;
      if (isSymlink(target)) unlinkSync(target);
      // Keep a built binary aside (with its stamp) so dropping the override needs no rebuild.
      else if (existsSync(target)) renameSync(target, parked(tool));
      symlinkSync(ov, target);
    } else if (isSymlink(target)) {
      // Left over from an earlier override: restore the parked build (or build again).
      unlinkSync(target);
      if (existsSync(parked(tool))) renameSync(parked(tool), target);
    }
  }
}

function isCurrent(tool) {
  if (overrideFor(tool)) return true;
  const bin = join(BIN_DIR, tool.name);
  if (!existsSync(bin)) return false;
  try {
    return readFileSync(join(STAMP_DIR, tool.name), 'utf8').trim() === stampFor(tool);
  } catch {
    return false;
  }
}

function fmtSecs(ms) {
  return `${(ms / 1000).toFixed(1)}s`;
}

function runGoBuild(tool) {
  const out = join(BIN_DIR, `.${tool.name}.tmp`);
  const args = [
    'build',
    '-mod=readonly',
    '-trimpath',
    '-p',
    GO_P,
    '-ldflags',
    ['-s', '-w', ...tool.ldflags()].join(' '),
    '-o',
    out,
    tool.pkg,
  ];
  const env = {
    ...process.env,
    CGO_ENABLED: process.env.CGO_ENABLED ?? '0',
    GOTOOLCHAIN: process.env.GOTOOLCHAIN ?? 'local',
    GOWORK: 'off',
  };
  return new Promise((resolvePromise, reject) => {
    const started = Date.now();
    const child = spawn(GO, args, {
      cwd: toolDir(tool),
      env,
      stdio: ['ignore', 'inherit', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
      process.stderr.write(d);
    });
    const ticker = setInterval(() => {
      log(`  ... still building ${tool.name} (${fmtSecs(Date.now() - started)} elapsed)`);
    }, 20_000);
    child.on('error', (e) => {
      clearInterval(ticker);
      reject(e);
    });
    child.on('close', (code) => {
      clearInterval(ticker);
      if (code !== 0) {
        rmSync(out, { force: true });
        reject(
          new Error(
            `building ${tool.name} failed (exit ${code}):\n  cd ${toolDir(tool)} && ${GO} ${args
              .map((a) => (a.includes(' ') ? JSON.stringify(a) : a))
              .join(' ')}\n${stderr.slice(-4000)}`,
          ),
        );
        return;
      }
      renameSync(out, join(BIN_DIR, tool.name));
      resolvePromise(Date.now() - started);
    });
  });
}

/** Takes an exclusive lock on the bin folder so parallel callers don't build twice. */
async function withLock(fn) {
  const lock = join(BIN_DIR, '.lock');
  for (;;) {
    try {
      const fd = openSync(lock, 'wx');
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      let owner = NaN;
      try {
        owner = Number(readFileSync(lock, 'utf8'));
      } catch {
        /* raced with release */
      }
      let alive = false;
      if (Number.isInteger(owner) && owner > 0) {
        try {
          process.kill(owner, 0);
          alive = true;
        } catch {
          alive = false;
        }
      }
      if (!alive) {
        rmSync(lock, { force: true });
        continue;
      }
      log(`waiting for another build (pid ${owner}) to finish...`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

async function build(only) {
  mkdirSync(STAMP_DIR, { recursive: true });
  syncOverrides();
  const wanted = only.length ? TOOLS.filter((t) => only.includes(t.name)) : TOOLS;
  for (const n of only) {
    if (!TOOLS.some((t) => t.name === n)) throw new Error(`unknown tool ${n}`);
  }
  await withLock(async () => {
    const todo = wanted.filter((t) => !isCurrent(t));
    if (todo.length === 0) {
      log(`all tools up to date in ${BIN_DIR}`);
      return;
    }
    const t0 = Date.now();
    const failures = [];
    log(`building ${todo.map((t) => t.name).join(', ')} with ${goVersion()} into ${BIN_DIR}`);
    log('(the first build compiles a lot of Go code and can take a while on 2 cores)');
    for (const [i, tool] of todo.entries()) {
      log(`[${i + 1}/${todo.length}] building ${tool.name} (${tool.pkg} in ${toolDir(tool).slice(REPO.length + 1)}) ...`);
      try {
        const ms = await runGoBuild(tool);
        writeFileSync(join(STAMP_DIR, tool.name), `${stampFor(tool)}\n`);
        const size = (statSync(join(BIN_DIR, tool.name)).size / 1048576).toFixed(1);
        log(`[${i + 1}/${todo.length}] built ${tool.name} in ${fmtSecs(ms)} (${size} MiB); total ${fmtSecs(Date.now() - t0)}`);
      } catch (e) {
        failures.push(tool.name);
        log(String(e instanceof Error ? e.message : e));
      }
    }
    if (failures.length) throw new Error(`failed to build: ${failures.join(', ')}`);
    log(`done in ${fmtSecs(Date.now() - t0)}`);
  });
}

function status() {
  mkdirSync(BIN_DIR, { recursive: true });
  syncOverrides();
  for (const tool of TOOLS) {
    const ov = overrideFor(tool);
    const state = ov ? `override -> ${ov}` : isCurrent(tool) ? 'built, current' : existsSync(join(BIN_DIR, tool.name)) ? 'built, STALE' : 'missing';
    process.stdout.write(`${tool.name.padEnd(24)} ${state}\n`);
  }
}

async function main() {
  const [cmd = 'help', ...rest] = process.argv.slice(2);
  switch (cmd) {
    case 'build':
      await build(rest);
      break;
    case 'path':
      syncOverrides();
      process.stdout.write(`${BIN_DIR}\n`);
      break;
    case 'which': {
      const tool = TOOLS.find((t) => t.name === rest[0]);
      if (!tool) throw new Error(`usage: tools.mjs which <${TOOLS.map((t) => t.name).join('|')}>`);
      process.stdout.write(`${overrideFor(tool) ?? join(BIN_DIR, tool.name)}\n`);
      break;
    }
    case 'status':
      status();
      break;
    default:
      process.stdout.write('usage: node scripts/tools.mjs build [name...] | path | which <name> | status\n');
      if (cmd !== 'help') process.exitCode = 2;
  }
}

main().catch((e) => {
  log(e instanceof Error ? e.message : String(e));
  process.exitCode = 1;
});
