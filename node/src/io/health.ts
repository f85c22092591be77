/**
 * `grpc.health.v1.Health`: SERVING for the overall server ("") and the node's services once
 * the node is ready (a leader is known and this node has caught up), NOT_SERVING before.
 * Watch streams are notified on every change.
 */
import * as grpc from '@grpc/grpc-js';

type ServingStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

/** Services this server reports on. */
export const HEALTH_SERVICES = ['', 'paxos.v1.KvService', 'paxos.v1.AdminService', 'paxos.v1.PeerService'];

/** The health state (a plain class) plus its gRPC wiring in `handlers()`. */
export class HealthState {
  private serving = false;
  private readonly watchers = new Set<grpc.ServerWritableStream<{ service: string }, { status: ServingStatus }>>();

  /** Sets the state; notifies watchers when it changes. */
  set(serving: boolean): void {
    if (serving === this.serving) return;
    this.serving = serving;
    for (const w of this.watchers) w.write({ status: this.statusOf(w.request.service) });
  }

  get isServing(): boolean {
    return this.serving;
  }

  /** Ends all watch streams (shutdown). */
  close(): void {
    this.serving = false;
    for (const w of this.watchers) {
      w.write({ status: 'NOT_SERVING' });
      w.end();
    }
    this.watchers.clear();
  }

  private statusOf(service: string): ServingStatus {
    if (!HEALTH_SERVICES.includes(service)) return 'SERVICE_UNKNOWN';
    return this.serving ? 'SERVING' : 'NOT_SERVING';
  }

  /** The Health service implementation. */
  handlers(): grpc.UntypedServiceImplementation {
    return {
      Check: (call: grpc.ServerUnaryCall<{ service: string }, { status: ServingStatus }>, callback: grpc.sendUnaryData<{ status: ServingStatus }>) => {
        const status = this.statusOf(call.request.service);
        if (status === 'SERVICE_UNKNOWN') callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${call.request.service}` });
        else callback(null, { status });
      },
      Watch: (call: grpc.ServerWritableStream<{ service: string }, { status: ServingStatus }>) => {
        call.write({ status: this.statusOf(call.request.service) });
        this.watchers.add(call);
        call.on('cancelled', () => this.watchers.delete(call));
        call.on('close', () => this.watchers.delete(call));
      },
    };
  }
}
