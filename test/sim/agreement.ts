import type { Entry, NodeId } from '../../node/src/core/types.js';
import type { NodeObserver } from './process.js';

/** A safety violation found while the run was going. */
export interface Violation {
  readonly kind: 'agreement' | 'state' | 'contract' | 'linearizability' | 'liveness' | 'session' | 'exception' | 'storage';
  readonly tick: number;
  readonly message: string;
}

/**
 * Checks agreement as entries are applied: every node that reports slot s as chosen must report
 * the same command there (Paxos' safety property: at most one value is chosen per slot), and every
 * serialised state machine at index i must be byte-identical (the state machine is deterministic,
 * so replicas that applied the same prefix agree; this also covers state that arrived by snapshot).
 *
 * Commands are compared, not ballots: the same value may be chosen again under a later ballot.
 */
export class AgreementChecker implements NodeObserver {
  readonly violations: Violation[] = [];
  private readonly chosen = new Map<number, { readonly command: string; readonly node: NodeId }>();
  private readonly states = new Map<number, { readonly data: string; readonly node: NodeId }>();

  constructor(private readonly now: () => number) {}

  /** Highest slot any node reported chosen. */
  get highestChosen(): number {
    let max = 0;
    for (const slot of this.chosen.keys()) if (slot > max) max = slot;
    return max;
  }

  committed(node: NodeId, entry: Entry): void {
    const command = JSON.stringify(entry.command);
    const first = this.chosen.get(entry.slot);
    if (first === undefined) {
      this.chosen.set(entry.slot, { command, node });
    } else if (first.command !== command) {
      this.report('agreement', `slot ${entry.slot}: node ${first.node} chose ${first.command}, node ${node} chose ${command}`);
    }
  }

  stateAt(node: NodeId, index: number, data: string): void {
    const first = this.states.get(index);
    if (first === undefined) this.states.set(index, { data, node });
    else if (first.data !== data) this.report('state', `state machines differ at index ${index}: node ${first.node} vs node ${node}`);
  }

  contractViolation(node: NodeId, what: string): void {
    this.report('contract', `node ${node}: ${what}`);
  }

  private report(kind: Violation['kind'], message: string): void {
    // One report per distinct problem is enough; a diverged slot is seen again by every node.
    if (this.violations.length < 20) this.violations.push({ kind, tick: this.now(), message });
  }
}
