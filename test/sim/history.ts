/**
 * The client history the linearizability checker reads: one record per client operation with
 * its invocation and (if it returned) its response, ordered by a global event counter.
 */

/** A single-key operation as the client issued it. Ranges are not recorded: they are not checked. */
export type KvCall =
  | { readonly type: 'put'; readonly key: string; readonly value: string }
  | { readonly type: 'get'; readonly key: string }
  | { readonly type: 'delete'; readonly key: string }
  | { readonly type: 'cas'; readonly key: string; readonly expected: string | null; readonly value: string };

/** What the client was told. `value` is the previous value (put, delete) or the value read (get). */
export type KvOutput =
  | { readonly ok: true; readonly value?: string | null }
  | { readonly ok: false; readonly code: 'casMismatch'; readonly current?: string | null };

/** One operation. `ret` is undefined when the outcome never became known (it may or may not have happened). */
export interface Operation {
  readonly id: number;
  readonly client: string;
  readonly call: KvCall;
  /** Position of the invocation in the global event order. */
  readonly invoke: number;
  /** Position of the response in the global event order. */
  ret?: number;
  output?: KvOutput;
  /** Logical times (ticks), for humans. */
  readonly invokeTick: number;
  returnTick?: number;
}

/** Records invocations and responses; event positions come from one counter so that they are a total order. */
export class History {
  private readonly records: Operation[] = [];
  private clock = 0;

  /** Records the invocation of `call` by `client` at `tick`; returns the operation's id. */
  invoke(client: string, call: KvCall, tick: number): number {
    const id = this.records.length;
    this.records.push({ id, client, call, invoke: this.clock++, invokeTick: tick });
    return id;
  }

  /** Records the response of operation `id`. */
  complete(id: number, output: KvOutput, tick: number): void {
    const op = this.records[id];
    if (op === undefined || op.ret !== undefined) throw new Error(`history: operation ${id} is unknown or already complete`);
    op.ret = this.clock++;
    op.output = output;
    op.returnTick = tick;
  }

  /** Every operation, in invocation order. */
  get operations(): readonly Operation[] {
    return this.records;
  }

  /** Operations that returned. */
  get completed(): number {
    return this.records.filter((o) => o.ret !== undefined).length;
  }
}

/** A one-line description of an operation, e.g. `#12 c1 put(k0,"v3") -> null [40..52]`. */
export function describeOperation(op: Operation): string {
  const c = op.call;
  const args =
    c.type === 'put' ? `${c.key},${JSON.stringify(c.value)}`
    : c.type === 'cas' ? `${c.key},${JSON.stringify(c.expected)}->${JSON.stringify(c.value)}`
    : c.key;
  const out =
    op.output === undefined ? '?'
    : op.output.ok ? JSON.stringify(op.output.value ?? null)
    : `casMismatch(${JSON.stringify(op.output.current ?? null)})`;
  return `#${op.id} ${op.client} ${c.type}(${args}) -> ${out} [${op.invokeTick}..${op.returnTick ?? 'never'}]`;
}
