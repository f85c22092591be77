/**
 * The kubelet's exec endpoint over SPDY/3.1 (remotecommand protocol v4), enough for
 * `kubectl exec` through the apiserver: the apiserver opens the streams (error, stdin, stdout,
 * stderr), the command runs non-interactively, output goes back as data frames and the exit
 * status as a Status object on the error stream. TTY and resize are not supported.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { constants, inflateSync } from 'node:zlib';

/** SPDY/3 header compression dictionary (from the SPDY/3 specification). */
const DICTIONARY = Buffer.from(
  'AAAAB29wdGlvbnMAAAAEaGVhZAAAAARwb3N0AAAAA3B1dAAAAAZkZWxldGUAAAAFdHJhY2UAAAAGYWNjZXB0AAAADmFjY2VwdC1jaGFyc2V0AAAAD2FjY2VwdC1lbmNvZGluZwAAAA9hY2NlcHQtbGFuZ3VhZ2UAAAANYWNjZXB0LXJhbmdlcwAAAANhZ2UAAAAFYWxsb3cAAAANYXV0aG9yaXphdGlvbgAAAA1jYWNoZS1jb250cm9sAAAACmNvbm5lY3Rpb24AAAAMY29udGVudC1iYXNlAAAAEGNvbnRlbnQtZW5jb2RpbmcAAAAQY29udGVudC1sYW5ndWFnZQAAAA5jb250ZW50LWxlbmd0aAAAABBjb250ZW50LWxvY2F0aW9uAAAAC2NvbnRlbnQtbWQ1AAAADWNvbnRlbnQtcmFuZ2UAAAAMY29udGVudC10eXBlAAAABGRhdGUAAAAEZXRhZwAAAAZleHBlY3QAAAAHZXhwaXJlcwAAAARmcm9tAAAABGhvc3QAAAAIaWYtbWF0Y2gAAAARaWYtbW9kaWZpZWQtc2luY2UAAAANaWYtbm9uZS1tYXRjaAAAAAhpZi1yYW5nZQAAABNpZi11bm1vZGlmaWVkLXNpbmNlAAAADWxhc3QtbW9kaWZpZWQAAAAIbG9jYXRpb24AAAAMbWF4LWZvcndhcmRzAAAABnByYWdtYQAAABJwcm94eS1hdXRoZW50aWNhdGUAAAATcHJveHktYXV0aG9yaXphdGlvbgAAAAVyYW5nZQAAAAdyZWZlcmVyAAAAC3JldHJ5LWFmdGVyAAAABnNlcnZlcgAAAAJ0ZQAAAAd0cmFpbGVyAAAAEXRyYW5zZmVyLWVuY29kaW5nAAAAB3VwZ3JhZGUAAAAKdXNlci1hZ2VudAAAAAR2YXJ5AAAAA3ZpYQAAAAd3YXJuaW5nAAAAEHd3dy1hdXRoZW50aWNhdGUAAAAGbWV0aG9kAAAAA2dldAAAAAZzdGF0dXMAAAAGMjAwIE9LAAAAB3ZlcnNpb24AAAAISFRUUC8xLjEAAAADdXJsAAAABnB1YmxpYwAAAApzZXQtY29va2llAAAACmtlZXAtYWxpdmUAAAAGb3JpZ2luMTAwMTAxMjAxMjAyMjA1MjA2MzAwMzAyMzAzMzA0MzA1MzA2MzA3NDAyNDA1NDA2NDA3NDA4NDA5NDEwNDExNDEyNDEzNDE0NDE1NDE2NDE3NTAyNTA0NTA1MjAzIE5vbi1BdXRob3JpdGF0aXZlIEluZm9ybWF0aW9uMjA0IE5vIENvbnRlbnQzMDEgTW92ZWQgUGVybWFuZW50bHk0MDAgQmFkIFJlcXVlc3Q0MDEgVW5hdXRob3JpemVkNDAzIEZvcmJpZGRlbjQwNCBOb3QgRm91bmQ1MDAgSW50ZXJuYWwgU2VydmVyIEVycm9yNTAxIE5vdCBJbXBsZW1lbnRlZDUwMyBTZXJ2aWNlIFVuYXZhaWxhYmxlSmFuIEZlYiBNYXIgQXByIE1heSBKdW4gSnVsIEF1ZyBTZXB0IE9jdCBOb3YgRGVjIDAwOjAwOjAwIE1vbiwgVHVlLCBXZWQsIFRodSwgRnJpLCBTYXQsIFN1biwgR01UY2h1bmtlZCx0ZXh0L2h0bWwsaW1hZ2UvcG5nLGltYWdlL2pwZyxpbWFnZS9naWYsYXBwbGljYXRpb24veG1sLGFwcGxpY2F0aW9uL3hodG1sK3htbCx0ZXh0L3BsYWluLHRleHQvamF2YXNjcmlwdCxwdWJsaWNwcml2YXRlbWF4LWFnZT1nemlwLGRlZmxhdGUsc2RjaGNoYXJzZXQ9dXRmLThjaGFyc2V0PWlzby04ODU5LTEsdXRmLSwqLGVucT0wLg==',
  'base64',
);

const TYPE_SYN_STREAM = 1;
const TYPE_SYN_REPLY = 2;
const TYPE_RST_STREAM = 3;
const TYPE_PING = 6;
const TYPE_GOAWAY = 7;
const FLAG_FIN = 1;

/** Streams of one exec session, by type. */
export interface ExecStreams {
  /** Data from the client's stdin (ended when the client closes it). */
  onStdin(cb: (data: Buffer | null) => void): void;
  /** Sends stdout data. */
  stdout(data: Buffer): void;
  /** Sends stderr data. */
  stderr(data: Buffer): void;
}

/** Runs the command; resolves with its exit code (or rejects with an error to report). */
export type ExecRunner = (command: readonly string[], streams: ExecStreams, wantStdin: boolean) => Promise<number>;

function headerBlock(headers: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  const n = Buffer.alloc(4);
  n.writeUInt32BE(Object.keys(headers).length);
  parts.push(n);
  for (const [k, v] of Object.entries(headers)) {
    for (const s of [k, v]) {
      const b = Buffer.from(s, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32BE(b.length);
      parts.push(len, b);
    }
  }
  return Buffer.concat(parts);
}

function parseHeaderBlock(b: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  const n = b.readUInt32BE(i);
  i += 4;
  for (let k = 0; k < n; k++) {
    const nl = b.readUInt32BE(i);
    i += 4;
    const name = b.subarray(i, i + nl).toString('utf8');
    i += nl;
    const vl = b.readUInt32BE(i);
    i += 4;
    out[name] = b.subarray(i, i + vl).toString('utf8');
    i += vl;
  }
  return out;
}

/**
 * Serves one upgraded exec request. `command` comes from the query (`command=` repeated).
 */
export function serveSpdyExec(req: IncomingMessage, socket: Duplex, run: ExecRunner): void {
  const url = new URL(req.url ?? '/', 'https://kubelet');
  const command = url.searchParams.getAll('command');
  const want = {
    stdin: url.searchParams.get('input') === '1' || url.searchParams.get('stdin') === 'true',
    stdout: url.searchParams.get('output') === '1' || url.searchParams.get('stdout') === 'true',
    stderr: url.searchParams.get('error') === '1' || url.searchParams.get('stderr') === 'true',
  };
  const offered = String(req.headers['x-stream-protocol-version'] ?? '').split(',').map((s) => s.trim());
  if (!offered.includes('v4.channel.k8s.io')) {
    socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n' +
      'X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n',
  );

  // Header compression. Incoming: one zlib stream across frames (decoded from the start each
  // time; it is tiny). Outgoing: a zlib stream made of stored (uncompressed) blocks.
  let inCompressed = Buffer.alloc(0);
  let inDecoded = 0;
  let outStarted = false;
  const inflateHeaders = (chunk: Buffer): Buffer => {
    inCompressed = Buffer.concat([inCompressed, chunk]);
    const all = inflateSync(inCompressed, { dictionary: DICTIONARY, finishFlush: constants.Z_SYNC_FLUSH });
    const fresh = all.subarray(inDecoded);
    inDecoded = all.length;
    return fresh;
  };
  const deflateHeaders = (raw: Buffer): Buffer => {
    const parts: Buffer[] = [];
    if (!outStarted) {
      parts.push(Buffer.from([0x78, 0x01]));
      outStarted = true;
    }
    for (let i = 0; i < raw.length || i === 0; i += 0xffff) {
      const piece = raw.subarray(i, Math.min(raw.length, i + 0xffff));
      const hdr = Buffer.alloc(5);
      hdr[0] = 0; // BFINAL=0, BTYPE=00 (stored)
      hdr.writeUInt16LE(piece.length, 1);
      hdr.writeUInt16LE(~piece.length & 0xffff, 3);
      parts.push(hdr, piece);
      if (raw.length === 0) break;
    }
    // An empty stored block (a zlib sync flush) makes the reader hand out the data without
    // waiting for more input, as Go's zlib.Writer.Flush does.
    parts.push(Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]));
    return Buffer.concat(parts);
  };

  const control = (type: number, flags: number, payload: Buffer): void => {
    const h = Buffer.alloc(8);
    h.writeUInt16BE(0x8000 | 3, 0);
    h.writeUInt16BE(type, 2);
    h.writeUInt32BE(((flags & 0xff) << 24) | payload.length, 4);
    socket.write(Buffer.concat([h, payload]));
  };
  const data = (streamId: number, payload: Buffer, fin = false): void => {
    const h = Buffer.alloc(8);
    h.writeUInt32BE(streamId & 0x7fffffff, 0);
    h.writeUInt32BE(((fin ? FLAG_FIN : 0) << 24) | payload.length, 4);
    socket.write(Buffer.concat([h, payload]));
  };

  const streams = new Map<string, number>(); // type -> id
  let stdinCb: ((d: Buffer | null) => void) | undefined;
  const pendingStdin: (Buffer | null)[] = [];
  let started = false;
  let closed = false;

  const expected = ['error', ...(want.stdin ? ['stdin'] : []), ...(want.stdout ? ['stdout'] : []), ...(want.stderr ? ['stderr'] : [])];
  const maybeStart = (): void => {
    if (started || !expected.every((t) => streams.has(t))) return;
    started = true;
    const io: ExecStreams = {
      onStdin: (cb) => {
        stdinCb = cb;
        for (const d of pendingStdin.splice(0)) cb(d);
      },
      stdout: (d) => {
        const id = streams.get('stdout');
        if (id !== undefined && !closed) data(id, d);
      },
      stderr: (d) => {
        const id = streams.get('stderr');
        if (id !== undefined && !closed) data(id, d);
      },
    };
    const finish = (status: Record<string, unknown>): void => {
      if (closed) return;
      const errId = streams.get('error');
      if (errId !== undefined) data(errId, Buffer.from(JSON.stringify(status)));
      for (const id of streams.values()) data(id, Buffer.alloc(0), true);
      closed = true;
      setTimeout(() => socket.end(), 100);
    };
    run(command, io, want.stdin).then(
      (code) =>
        finish(
          code === 0
            ? { metadata: {}, status: 'Success' }
            : {
                metadata: {},
                status: 'Failure',
                message: `command terminated with non-zero exit code: ${code}`,
                reason: 'NonZeroExitCode',
                details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
              },
        ),
      (e: unknown) =>
        finish({ metadata: {}, status: 'Failure', message: e instanceof Error ? e.message : String(e), reason: 'InternalError' }),
    );
  };

  let buf = Buffer.alloc(0);
  const onFrame = (frame: Buffer): void => {
    const first = frame.readUInt32BE(0);
    const flagsLen = frame.readUInt32BE(4);
    const flags = flagsLen >>> 24;
    const payload = frame.subarray(8);
    if (first & 0x80000000) {
      const type = first & 0xffff;
      if (type === TYPE_SYN_STREAM) {
        const id = payload.readUInt32BE(0) & 0x7fffffff;
        const headers = parseHeaderBlock(inflateHeaders(payload.subarray(10)));
        const t = headers.streamtype ?? '';
        streams.set(t, id);
        const reply = Buffer.alloc(4);
        reply.writeUInt32BE(id);
        control(TYPE_SYN_REPLY, 0, Buffer.concat([reply, deflateHeaders(headerBlock({}))]));
        if (t === 'stdin' && flags & FLAG_FIN) deliverStdin(null);
        maybeStart();
      } else if (type === TYPE_PING) {
        control(TYPE_PING, 0, payload);
      } else if (type === TYPE_GOAWAY || type === TYPE_RST_STREAM) {
        if (type === TYPE_GOAWAY) socket.end();
      }
      return;
    }
    const id = first & 0x7fffffff;
    if (id === streams.get('stdin')) {
      if (payload.length) deliverStdin(Buffer.from(payload));
      if (flags & FLAG_FIN) deliverStdin(null);
    }
  };
  const deliverStdin = (d: Buffer | null): void => {
    if (stdinCb) stdinCb(d);
    else pendingStdin.push(d);
  };
  socket.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 8) {
      const len = buf.readUInt32BE(4) & 0xffffff;
      if (buf.length < 8 + len) break;
      const frame = buf.subarray(0, 8 + len);
      buf = buf.subarray(8 + len);
      try {
        onFrame(frame);
      } catch {
        socket.destroy();
        return;
      }
    }
  });
  socket.on('error', () => socket.destroy());
}
