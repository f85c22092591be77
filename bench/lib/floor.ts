/**
 * The physical floor of one replicated write on this machine: a loopback TCP round trip
 * (to an echo server in its own process) plus one fdatasync of a 4 KiB append.
 */
import { closeSync, fdatasyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { freePorts, sleep, type ProcessGroup } from './procs.js';
import { percentile, round, sorted } from './stats.js';

export interface Floor {
  readonly rtt_p50_ms: number;
  readonly rtt_p99_ms: number;
  readonly fdatasync_p50_ms: number;
  readonly fdatasync_p99_ms: number;
  readonly floor_ms: number;
  readonly rtt_samples: number;
  readonly fdatasync_samples: number;
}

const ECHO_SERVER = `
const net = require('node:net');
const port = Number(process.argv[1]);
net.createServer((s) => { s.setNoDelay(true); s.pipe(s); }).listen(port, '127.0.0.1', () => console.log('ready'));
`;

/** Round trips of a 32-byte message over loopback TCP, in ms. */
async function loopbackRtts(group: ProcessGroup, dir: string, n: number): Promise<number[]> {
  const [port] = await freePorts(1);
  const echo = group.spawn('echo-server', process.execPath, ['-e', ECHO_SERVER, String(port)], join(dir, 'echo.log'));
  let sock: Socket | undefined;
  for (let i = 0; i < 100 && !sock; i++) {
    sock = await new Promise<Socket | undefined>((resolve) => {
      const s = connect(port as number, '127.0.0.1', () => resolve(s));
      s.once('error', () => resolve(undefined));
    });
    if (!sock) await sleep(50);
  }
  if (!sock) throw new Error('echo server did not start');
  sock.setNoDelay(true);
  const msg = Buffer.alloc(32, 7);
  const out: number[] = [];
  let got = 0;
  let done: (() => void) | undefined;
  sock.on('data', (d: Buffer) => {
    got += d.length;
    if (got >= msg.length && done) {
      got -= msg.length;
      const f = done;
      done = undefined;
      f();
    }
  });
  const warm = Math.min(200, Math.floor(n / 5));
  for (let i = 0; i < n + warm; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve) => {
      done = resolve;
      sock?.write(msg);
    });
    if (i >= warm) out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  sock.destroy();
  echo.child.kill('SIGTERM');
  await echo.exited;
  return out;
}

/** Append 4 KiB + fdatasync, `n` times, in `dir`; ms per append. */
function fdatasyncs(dir: string, n: number): number[] {
  const file = join(dir, 'floor-fdatasync.bin');
  const fd = openSync(file, 'a');
  const buf = Buffer.alloc(4096, 0x5a);
  const out: number[] = [];
  try {
    for (let i = 0; i < n + 5; i++) {
      const t0 = process.hrtime.bigint();
      writeSync(fd, buf);
      fdatasyncSync(fd);
      if (i >= 5) out.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  } finally {
    closeSync(fd);
    unlinkSync(file);
  }
  return out;
}

/** Measures the floor; `dir` must be on the file system the data directories use. */
export async function measureFloor(group: ProcessGroup, dir: string, quick: boolean): Promise<Floor> {
  const rtt = sorted(await loopbackRtts(group, dir, quick ? 1000 : 3000));
  const sync = sorted(fdatasyncs(dir, quick ? 100 : 300));
  const rtt50 = percentile(rtt, 50);
  const sync50 = percentile(sync, 50);
  return {
    rtt_p50_ms: round(rtt50, 4),
    rtt_p99_ms: round(percentile(rtt, 99), 4),
    fdatasync_p50_ms: round(sync50, 4),
    fdatasync_p99_ms: round(percentile(sync, 99), 4),
    floor_ms: round(rtt50 + sync50, 4),
    rtt_samples: rtt.length,
    fdatasync_samples: sync.length,
  };
}
