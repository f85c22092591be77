/**
 * Addresses for test node processes that nothing else on the machine will take.
 *
 * Tests reserve every node's port up front (each node's `--peers` flag names all of them) but
 * start some nodes minutes later. A port that was merely free at reservation time, picked from
 * the kernel's ephemeral range on 127.0.0.1, can meanwhile be handed to another process: in one
 * CI run a node expected to join found its client port answered by another test's gRPC server
 * (`UNIMPLEMENTED ... AdminService/Status`) and the expansion never finished.
 *
 * So each {@link LoopbackAddresses} gets a host of its own, a random address in 127.64.0.0/10
 * (all of 127.0.0.0/8 is loopback on Linux, no setup needed), and hands out ports below the
 * ephemeral range, which neither `listen(0)` nor outgoing connections ever pick. Each port is
 * still checked by binding it once, so a clash is an error at reservation, not a hang later.
 */
import * as net from 'node:net';

/** First port handed out: below Linux's default ephemeral range (32768–60999). */
const FIRST_PORT = 20_000;
const LAST_PORT = 32_767;

/** A private loopback host and the ports reserved on it. */
export class LoopbackAddresses {
  /** The host, e.g. `127.93.17.5`; nodes listen on it and peers dial it. */
  readonly host: string;
  private nextPort = FIRST_PORT;

  constructor(random: () => number = Math.random) {
    const byte = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));
    // 127.64.0.0/10, avoiding .0 and .255 in the last byte out of caution.
    this.host = `127.${byte(64, 127)}.${byte(0, 255)}.${byte(1, 254)}`;
  }

  /** Reserves the next port on {@link host} that binds; throws if none is left. */
  async port(): Promise<number> {
    while (this.nextPort <= LAST_PORT) {
      const port = this.nextPort;
      this.nextPort += 1;
      if (await bindable(this.host, port)) return port;
    }
    throw new Error(`no free port left on ${this.host} in ${FIRST_PORT}-${LAST_PORT}`);
  }

  /** `host:port`; an unknown port (undefined) stays visibly wrong instead of throwing. */
  endpoint(port: number | undefined): string {
    return `${this.host}:${port}`;
  }
}

async function bindable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}
