/**
 * Builds the images the local cluster runs, with no image registry in reach:
 *
 * - a stand-in for `node:20-bookworm-slim`: a Debian bookworm root filesystem made by
 *   `debootstrap --variant=minbase` plus this machine's Node.js runtime (the `nodejs` package's
 *   files), packed as an OCI image by umoci;
 * - the pod sandbox image (`pause`), a static binary built from `pause.c`;
 * - `paxosquorum/node` and `paxosquorum/operator`, built from `node/Dockerfile` and
 *   `operator/Dockerfile` **as written** by BuildKit (buildkitd with its runc worker and
 *   buildctl, both built from Go modules by `npm run tools:build`).
 *
 * What this machine needs is solved here, not in the Dockerfiles: the `# syntax=` line would
 * make BuildKit pull a frontend image, so the built-in Dockerfile frontend is used directly
 * (the `cmdline` frontend option, which BuildKit sets itself once it has forwarded to a syntax
 * image); `FROM ${NODE_IMAGE}` is served from the local OCI layout as a named build context
 * (`context:node:20-bookworm-slim=oci-layout://…`); `npm ci` inside `RUN` reaches the package
 * registry through the host network (`--oci-worker-net=host`). With Docker elsewhere the same
 * Dockerfiles build against the real base image.
 *
 * Everything is cached under `.tools/images/` (git-ignored), keyed by what it was built from;
 * BuildKit's own layer cache lives in `.tools/buildkit/`. Each result is an OCI archive that
 * the nodes' containerd instances import into their `k8s.io` namespace.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import { parse as parseYaml } from 'yaml';
import { REPO_ROOT, requireTools, toolsBinDir } from '../cluster/tools.js';
import { requireCommands, run, tryRun } from './exec.js';

/** Where the image work lives (git-ignored). */
export const IMAGES_DIR = process.env.LOCAL_CLUSTER_IMAGES_DIR ?? join(REPO_ROOT, '.tools', 'images');
const BUILDKIT_ROOT = join(REPO_ROOT, '.tools', 'buildkit');

/** The base image name the Dockerfiles use by default (their `ARG NODE_IMAGE`). */
export const BASE_IMAGE = 'node:20-bookworm-slim';
/** Name of the sandbox image, set as containerd's `sandbox_image`. */
export const PAUSE_IMAGE = 'registry.k8s.io/pause:3.10';
const DEBIAN_SUITE = 'bookworm';
const DEBIAN_MIRROR = process.env.DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
/** Packages beyond minbase that the Node.js runtime and npm need (C++ runtime, TLS roots). */
const BASE_EXTRA_PACKAGES = ['libstdc++6', 'ca-certificates'];

/** One built image, as an OCI archive ready for `ctr images import`. */
export interface BuiltImage {
  /** Full reference, e.g. `docker.io/paxosquorum/node:0.1.0`. */
  readonly ref: string;
  /** Manifest digest (`sha256:…`), the image's digest in a registry. */
  readonly digest: string;
  /**
   * Config digest (`sha256:…`), the image ID: what the kubelet reports as a container's
   * `imageID` for an image that was imported rather than pulled (it has no repository digest).
   */
  readonly imageId: string;
  /** Size of the archive in bytes (all layers, compressed). */
  readonly sizeBytes: number;
  /** The OCI archive. */
  readonly archive: string;
}

/** The images of the local cluster. */
export interface ImageSet {
  readonly pause: BuiltImage;
  readonly node: BuiltImage;
  readonly operator: BuiltImage;
}

/** Options of {@link buildImages}. */
export interface BuildImagesOptions {
  /** Tag for the node and operator images (default: the chart's appVersion). */
  readonly tag?: string;
  /** Progress lines (default: stderr). */
  readonly log?: (line: string) => void;
}

function sha256(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Hex digest of a file's content, streamed through `sha256sum` to stay off the JS heap. */
async function fileDigest(path: string): Promise<string> {
  return (await run('sha256sum', [path])).split(' ')[0] ?? '';
}

/** The chart's appVersion, the default tag of both images. */
export function chartAppVersion(): string {
  const chart = parseYaml(readFileSync(join(REPO_ROOT, 'charts', 'paxos-operator', 'Chart.yaml'), 'utf8')) as { appVersion?: string };
  if (!chart.appVersion) throw new Error('charts/paxos-operator/Chart.yaml has no appVersion');
  return String(chart.appVersion);
}

/** Reads the manifest digest of the image tagged `tag` in an OCI layout. */
function layoutDigest(layout: string, tag: string): string {
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string; annotations?: Record<string, string> }[];
  };
  const m = index.manifests.find((d) => d.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!m) throw new Error(`${layout}: no image tagged ${tag}`);
  return m.digest;
}

/** Packs a directory tree as a one-layer OCI image `tag` in `layout` (created if missing). */
async function packLayout(layout: string, tag: string, tree: string, config: readonly string[]): Promise<void> {
  if (!existsSync(join(layout, 'index.json'))) await run('umoci', ['init', '--layout', layout]);
  await tryRun('umoci', ['rm', '--image', `${layout}:${tag}`]);
  await run('umoci', ['new', '--image', `${layout}:${tag}`]);
  await run('umoci', ['insert', '--image', `${layout}:${tag}`, tree, '/'], { timeoutMs: 600_000 });
  await run('umoci', ['config', '--image', `${layout}:${tag}`, '--os', 'linux', '--architecture', 'amd64', ...config]);
  await run('umoci', ['gc', '--layout', layout]);
}

/** Writes an OCI archive of one image of a layout, named `ref` for containerd's importer. */
async function archiveLayout(layout: string, tag: string, ref: string, archive: string): Promise<BuiltImage> {
  const digest = layoutDigest(layout, tag);
  const staging = `${archive}.d`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(layout, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as {
    config: { digest: string };
    layers: { digest: string }[];
  };
  const blobs = [digest, manifest.config.digest, ...manifest.layers.map((l) => l.digest)].map((d) => `blobs/sha256/${d.slice(7)}`);
  const size = blobs.map((b) => statSync(join(layout, b)).size).reduce((a, b) => a + b, 0);
  writeFileSync(join(staging, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(
    join(staging, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest,
          size: statSync(join(layout, 'blobs', 'sha256', digest.slice(7))).size,
          annotations: { 'io.containerd.image.name': ref, 'org.opencontainers.image.ref.name': ref.split(':').pop() },
        },
      ],
    }),
  );
  await run('tar', ['-C', staging, '-cf', `${archive}.tmp`, 'oci-layout', 'index.json']);
  await run('tar', ['-C', layout, '-rf', `${archive}.tmp`, ...blobs]);
  renameSync(`${archive}.tmp`, archive);
  rmSync(staging, { recursive: true, force: true });
  return { ref, digest, imageId: manifest.config.digest, sizeBytes: size, archive };
}

/**
 * Paths of this machine's Node.js runtime to copy into the base image: the `nodejs` package's
 * files outside /usr/lib/node_modules (docs left out), and the npm and corepack folders whole,
 * since npm may have been upgraded in place after the package was installed.
 */
async function nodejsPaths(): Promise<{ files: string[]; trees: string[] }> {
  const list = await run('dpkg', ['-L', 'nodejs']);
  const files = list
    .split('\n')
    .filter((p) => p.startsWith('/') && p !== '/.' && !p.startsWith('/usr/lib/node_modules'))
    .filter((p) => !/^\/usr\/(share\/(doc|man)|include)(\/|$)/.test(p));
  const trees = ['/usr/lib/node_modules/npm', '/usr/lib/node_modules/corepack'].filter((p) => existsSync(p));
  return { files, trees };
}

/** Certificates this machine added to its trust store (Debian's update-ca-certificates input). */
function localCaFiles(): string[] {
  const dir = '/usr/local/share/ca-certificates';
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.crt'))
    .sort()
    .map((f) => join(dir, f));
}

/** Version of the npm that the base image gets (part of its cache key). */
function npmVersion(): string {
  try {
    return (JSON.parse(readFileSync('/usr/lib/node_modules/npm/package.json', 'utf8')) as { version: string }).version;
  } catch {
    return 'none';
  }
}

/**
 * The `node:20-bookworm-slim` stand-in as an OCI layout; returns its manifest digest.
 * Cached: rebuilt only when the suite, the extra packages or the Node.js version change.
 */
async function ensureBaseImage(log: (l: string) => void): Promise<{ layout: string; digest: string }> {
  const dir = join(IMAGES_DIR, 'base');
  const layout = join(dir, 'oci');
  const stampFile = join(dir, 'stamp');
  const nodeVersion = process.versions.node;
  const stamp = sha256(`rev=3 suite=${DEBIAN_SUITE} extra=${BASE_EXTRA_PACKAGES.join(',')} node=${nodeVersion} npm=${npmVersion()} cas=${localCaFiles().map((f) => sha256(readFileSync(f))).join(',')}`);
  if (existsSync(stampFile) && readFileSync(stampFile, 'utf8').trim() === stamp) {
    return { layout, digest: layoutDigest(layout, 'base') };
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const rootfs = join(dir, 'rootfs');
  const started = Date.now();
  log(`base image: debootstrap --variant=minbase ${DEBIAN_SUITE} (a minute or two) ...`);
  await run(
    'debootstrap',
    ['--variant=minbase', `--include=${BASE_EXTRA_PACKAGES.join(',')}`, DEBIAN_SUITE, rootfs, DEBIAN_MIRROR],
    { timeoutMs: 900_000 },
  );
  // What the slim image leaves out: downloaded packages and package lists.
  for (const sub of ['var/cache/apt/archives', 'var/lib/apt/lists']) {
    await run('find', [join(rootfs, sub), '-mindepth', '1', '-not', '-name', 'lock', '-not', '-name', 'partial', '-delete']);
  }
  log(`base image: adding Node.js ${nodeVersion} from this machine's nodejs package ...`);
  const { files, trees } = await nodejsPaths();
  await run('sh', ['-c', `tar -C / --no-recursion -cf - -T - | tar -C '${rootfs}' -xf -`], { input: `${files.map((f) => f.slice(1)).join('\n')}\n` });
  await run('sh', ['-c', `tar -C / -cf - ${trees.map((t) => `'${t.slice(1)}'`).join(' ')} | tar -C '${rootfs}' -xf -`]);
  // This machine's own trust anchors (the package registries are reached through them), added
  // the way a site's base image adds its CA: into the image's system bundle, which npm uses.
  const localCas = localCaFiles();
  if (localCas.length > 0) {
    log(`base image: adding this machine's local CA certificates (${localCas.length})`);
    await run('cp', [...localCas, join(rootfs, 'usr', 'local', 'share', 'ca-certificates')]);
    await run('chroot', [rootfs, 'update-ca-certificates']);
    // npm trusts Node's built-in roots only, unless told to use the system bundle (npm's global
    // config, <prefix>/etc/npmrc), as it is on this machine.
    mkdirSync(join(rootfs, 'usr', 'etc'), { recursive: true });
    writeFileSync(join(rootfs, 'usr', 'etc', 'npmrc'), 'cafile=/etc/ssl/certs/ca-certificates.crt\n');
  }
  await packLayout(layout, 'base', rootfs, [
    '--config.env', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    '--config.env', `NODE_VERSION=${nodeVersion}`,
    '--config.cmd', 'node',
  ]);
  rmSync(rootfs, { recursive: true, force: true });
  writeFileSync(stampFile, `${stamp}\n`);
  log(`base image: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return { layout, digest: layoutDigest(layout, 'base') };
}

/** The pause image, built from pause.c with a static libc. */
async function ensurePauseImage(): Promise<BuiltImage> {
  const dir = join(IMAGES_DIR, 'pause');
  const src = join(REPO_ROOT, 'test', 'k8s', 'node', 'pause.c');
  const stamp = sha256(`rev=2\n${readFileSync(src, 'utf8')}`);
  const archive = join(dir, 'pause.oci.tar');
  const stampFile = join(dir, 'stamp');
  if (existsSync(stampFile) && existsSync(archive) && readFileSync(stampFile, 'utf8').trim() === stamp) {
    return JSON.parse(readFileSync(join(dir, 'image.json'), 'utf8')) as BuiltImage;
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'tree'), { recursive: true });
  await run('gcc', ['-static', '-Os', '-s', '-o', join(dir, 'tree', 'pause'), src]);
  await packLayout(join(dir, 'oci'), 'pause', join(dir, 'tree'), ['--config.entrypoint', '/pause']);
  const image = await archiveLayout(join(dir, 'oci'), 'pause', PAUSE_IMAGE, archive);
  writeFileSync(join(dir, 'image.json'), JSON.stringify(image));
  writeFileSync(stampFile, `${stamp}\n`);
  return image;
}

/** A buildkitd of our own (runc worker, host network for RUN), stopped by {@link stop}. */
class BuildkitDaemon {
  private child: ChildProcess | undefined;
  readonly address = `unix://${join(BUILDKIT_ROOT, 'buildkitd.sock')}`;
  private stderrTail = '';

  constructor(private readonly binDir: string) {}

  async start(): Promise<void> {
    mkdirSync(BUILDKIT_ROOT, { recursive: true });
    rmSync(join(BUILDKIT_ROOT, 'buildkitd.sock'), { force: true });
    const child = spawn(
      join(this.binDir, 'buildkitd'),
      [
        '--root', join(BUILDKIT_ROOT, 'root'),
        '--addr', this.address,
        '--oci-worker=true',
        '--oci-worker-snapshotter=overlayfs',
        '--oci-worker-net=host',
        '--containerd-worker=false',
        // No OpenTelemetry exporter, no registry mirror: nothing leaves this machine.
        '--oci-worker-gc-keepstorage=20000',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, OTEL_TRACES_EXPORTER: 'none' } },
    );
    this.child = child;
    child.stderr?.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString()).slice(-4000);
    });
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`buildkitd exited with ${child.exitCode}:\n${this.stderrTail}`);
      const r = await tryRun(join(this.binDir, 'buildctl'), ['--addr', this.address, 'debug', 'workers'], { timeoutMs: 5000 });
      if (r.ok) return;
      if (Date.now() > deadline) throw new Error(`buildkitd did not answer within 60 s:\n${this.stderrTail}`);
      await sleep(300);
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Builds one of our Dockerfiles with buildctl into an OCI archive. */
async function buildDockerfile(
  binDir: string,
  daemon: BuildkitDaemon,
  base: { layout: string; digest: string },
  dockerfileDir: 'node' | 'operator',
  ref: string,
  log: (l: string) => void,
  name: string = dockerfileDir,
): Promise<BuiltImage> {
  const dir = join(IMAGES_DIR, name);
  mkdirSync(dir, { recursive: true });
  const archive = join(dir, `${name}.oci.tar`);
  const metadata = join(dir, 'metadata.json');
  const started = Date.now();
  log(`${ref}: buildctl build -f ${dockerfileDir}/Dockerfile ...`);
  await run(
    join(binDir, 'buildctl'),
    [
      '--addr', daemon.address,
      'build',
      '--progress', 'plain',
      '--frontend', 'dockerfile.v0',
      '--local', `context=${REPO_ROOT}`,
      '--local', `dockerfile=${join(REPO_ROOT, dockerfileDir)}`,
      '--opt', 'filename=Dockerfile',
      // Run the built-in frontend instead of pulling the one named by `# syntax=`.
      '--opt', 'cmdline=docker/dockerfile:1.7',
      '--oci-layout', `base=${base.layout}`,
      '--opt', `context:${BASE_IMAGE}=oci-layout://base@${base.digest}`,
      '--output', `type=oci,dest=${archive}.tmp,name=${ref}`,
      '--metadata-file', metadata,
    ],
    { timeoutMs: 1_200_000 },
  );
  renameSync(`${archive}.tmp`, archive);
  const meta = JSON.parse(readFileSync(metadata, 'utf8')) as Record<string, string>;
  const digest = meta['containerimage.digest'];
  const imageId = meta['containerimage.config.digest'];
  if (!digest?.startsWith('sha256:') || !imageId?.startsWith('sha256:')) throw new Error(`buildctl wrote no image digests to ${metadata}`);
  const image: BuiltImage = { ref, digest, imageId, sizeBytes: statSync(archive).size, archive };
  log(`${ref}: ${digest} (${(image.sizeBytes / 1048576).toFixed(1)} MiB) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return image;
}

/** Host commands the image build needs, with their Debian packages. */
export const IMAGE_BUILD_COMMANDS = [
  { command: 'debootstrap', debianPackage: 'debootstrap' },
  { command: 'umoci', debianPackage: 'umoci' },
  { command: 'runc', debianPackage: 'runc' },
  { command: 'gcc', debianPackage: 'gcc' },
  { command: 'dpkg', debianPackage: 'dpkg' },
] as const;

/**
 * Builds (or takes from the cache) the base and pause images and builds the node and operator
 * images from their Dockerfiles. BuildKit's layer cache makes an unchanged rebuild take seconds.
 */
export async function buildImages(opts: BuildImagesOptions = {}): Promise<ImageSet> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`[images] ${l}\n`));
  if (process.getuid?.() !== 0) throw new Error('building images needs root (debootstrap, buildkitd with runc)');
  requireCommands(IMAGE_BUILD_COMMANDS);
  const binDir = toolsBinDir();
  requireTools(['buildkitd', 'buildctl'], binDir);
  const tag = opts.tag ?? chartAppVersion();
  mkdirSync(IMAGES_DIR, { recursive: true });
  const base = await ensureBaseImage(log);
  const pause = await ensurePauseImage();
  const daemon = new BuildkitDaemon(binDir);
  await daemon.start();
  try {
    const node = await buildDockerfile(binDir, daemon, base, 'node', `docker.io/paxosquorum/node:${tag}`, log);
    const operator = await buildDockerfile(binDir, daemon, base, 'operator', `docker.io/paxosquorum/operator:${tag}`, log);
    const set: ImageSet = { pause, node, operator };
    writeFileSync(join(IMAGES_DIR, 'images.json'), `${JSON.stringify(set, null, 2)}\n`);
    return set;
  } finally {
    await daemon.stop();
  }
}

/**
 * Builds `node/Dockerfile` once more under another tag (for a rolling upgrade): the same
 * Dockerfile and context, so BuildKit's cache makes it take seconds.
 */
export async function buildNodeImage(tag: string, log: (l: string) => void = (l) => process.stderr.write(`[images] ${l}\n`)): Promise<BuiltImage> {
  const binDir = toolsBinDir();
  requireTools(['buildkitd', 'buildctl'], binDir);
  const base = await ensureBaseImage(log);
  const daemon = new BuildkitDaemon(binDir);
  await daemon.start();
  try {
    return await buildDockerfile(binDir, daemon, base, 'node', `docker.io/paxosquorum/node:${tag}`, log, `node-${tag}`);
  } finally {
    await daemon.stop();
  }
}

export { fileDigest };
