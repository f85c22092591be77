/**
 * A small interpreter for scripted scenarios with golden output, in the style of etcd-io/raft's
 * `testdata/*.txt` (datadriven): a file is a list of blocks
 *
 *     # comments
 *     command args...
 *     ----
 *     expected output
 *
 * separated by blank lines. {@link runScenario} executes the commands in order against a calm
 * simulated world and returns the file with every block's output replaced by what happened; the
 * test compares that with the file (and writes it back with `UPDATE_GOLDEN=1`).
 *
 * Commands (node ids are ordinals, or `leader` for the current leader; member lists are
 * comma-separated, e.g. `0,1,2`):
 *   add-nodes N [seed=S] [compact=C]   bootstrap N nodes on {epoch 1, members 0..N-1}
 *   tick [N]                           N ticks (default 1), messages delivered after one tick
 *   deliver-msgs                       deliver everything in flight now, without ticking
 *   stabilize [N]                      tick until one leader, every running node at its commit, no
 *                                      request pending (at most N ticks, default 500); prints status
 *   status                             one line per node: role, leader, config, fence, commit, snapshot
 *   put NODE KEY VALUE                 a client write proposed on NODE (answers show up when applied)
 *   get NODE KEY                       a read-index read on NODE
 *   start NODE EPOCH MEMBERS [PRIOR]   a new node with an empty disk on that configuration
 *   convert NODE EPOCH MEMBERS [PRIOR] the operator's convert on NODE
 *   transfer FROM TO                   transferLeadership(TO) on FROM
 *   finalize NODE                      finalize() on NODE
 *   partition A | B [| C...]           two-way partition between groups
 *   cut FROM TO                        one-way cut
 *   heal                               restore every link
 *   crash NODE / restart NODE          crash (losing unsynced writes) and restart from disk
 *   stop NODE                          remove NODE and delete its disk
 *   wipe NODE [unprotected]            NODE loses its disk and restarts empty on its configuration,
 *                                      marked as having lost data (or not: acceptor amnesia)
 *   violations                         the agreement checker's findings so far, or `none`
 *   log on|off                         from now on print every message delivered and every Ready
 *                                      a driver takes from its core (etcd's raft testdata style);
 *                                      heartbeats and their replies are left out
 */
import type { Ballot, Config, Entry, Message, NodeId, Ready } from '../../node/src/core/types.js';
import { realReplica } from './core.js';
import type { AdminReply, NodeReply, ReplicaFactory, SimNode } from './process.js';
import { Rng } from './rng.js';
import { Trace } from './trace.js';
import { DEFAULT_WORLD_OPTIONS, describeConfig, World } from './world.js';

interface Block {
  readonly comments: readonly string[];
  readonly command: string;
}

/** Runs a scenario file's text; returns the same text with the actual outputs. */
export async function runScenario(text: string, factory: ReplicaFactory = realReplica): Promise<string> {
  const interpreter = new Interpreter(factory);
  const out: string[] = [];
  for (const block of parse(text)) {
    let output: string[];
    try {
      output = await interpreter.run(block.command);
    } catch (error) {
      output = [`error: ${error instanceof Error ? error.message : String(error)}`];
    }
    out.push([...block.comments, block.command, '----', ...(output.length === 0 ? ['ok'] : output)].join('\n'));
  }
  return `${out.join('\n\n')}\n`;
}

/** Splits a file into blocks; expected outputs are dropped (they are what gets compared). */
function parse(text: string): Block[] {
  const blocks: Block[] = [];
  for (const chunk of text.split(/\n\s*\n/)) {
    const lines = chunk.split('\n').map((l) => l.trimEnd()).filter((l) => l !== '');
    if (lines.length === 0) continue;
    const sep = lines.indexOf('----');
    const head = sep < 0 ? lines : lines.slice(0, sep);
    const comments = head.filter((l) => l.startsWith('#'));
    const commands = head.filter((l) => !l.startsWith('#'));
    if (commands.length !== 1) throw new Error(`scenario: a block needs exactly one command, got: ${head.join(' / ')}`);
    blocks.push({ comments, command: commands[0] as string });
  }
  return blocks;
}

class Interpreter {
  private world: World | undefined;
  private readonly replies: string[] = [];
  /** What the watcher saw during the current command (with `log on`). */
  private readonly events: string[] = [];
  private logging = false;
  private pending = 0;
  private seq = 0;

  constructor(private readonly factory: ReplicaFactory) {}

  async run(command: string): Promise<string[]> {
    const [name, ...args] = command.split(/\s+/);
    const out = await this.execute(name as string, args);
    // What happened (with `log on`), then answers to client requests that arrived meanwhile.
    return [...this.events.splice(0), ...out, ...this.replies.splice(0)];
  }

  private get w(): World {
    if (this.world === undefined) throw new Error('add-nodes first');
    return this.world;
  }

  private async execute(name: string, rawArgs: string[]): Promise<string[]> {
    // `leader` stands for the current leader's id, so that scripts survive changes of election timing.
    const args = name === 'add-nodes' ? rawArgs : rawArgs.map((a) => (a === 'leader' ? String(this.w.leader()?.id ?? 'none') : a));
    switch (name) {
      case 'add-nodes': {
        const n = int(args[0]);
        const opt = (key: string, dflt: number): number => int(args.find((a) => a.startsWith(`${key}=`))?.split('=')[1] ?? String(dflt));
        // Scripts are step-exact: every write completes within the step that caused it.
        const options = { ...DEFAULT_WORLD_OPTIONS, node: { ...DEFAULT_WORLD_OPTIONS.node, compactEverySlots: opt('compact', 1_000_000), slowFsyncChance: 0 } };
        this.world = new World(new Rng(opt('seed', 1)), n, this.factory, new Trace(), options);
        return this.status();
      }
      case 'tick': {
        const n = args[0] === undefined ? 1 : int(args[0]);
        for (let i = 0; i < n; i++) await this.w.tick();
        return [];
      }
      case 'deliver-msgs':
        return [`delivered ${await this.w.deliverAll()} messages`];
      case 'stabilize': {
        const max = args[0] === undefined ? 500 : int(args[0]);
        let why = this.unstable();
        for (let i = 0; i < max && why !== undefined; i++) {
          await this.w.tick();
          why = this.unstable();
        }
        return [...(why === undefined ? [] : [`not stable after ${max} ticks: ${why}`]), ...this.status()];
      }
      case 'status':
        return this.status();
      case 'put':
      case 'get':
        return this.client(name, int(args[0]), args[1] ?? 'k', args[2]);
      case 'start':
        this.w.startNew(int(args[0]), config(args.slice(1)), int(args[1]) - 1);
        await this.w.drainAll();
        return [];
      case 'convert':
        return [await admin(this.w, int(args[0]), (n, answer) => n.admin('Convert', { config: config(args.slice(1)) }, answer))];
      case 'transfer':
        return [await admin(this.w, int(args[0]), (n, answer) => n.admin('TransferLeadership', { target: int(args[1]) }, answer))];
      case 'finalize':
        return [await admin(this.w, int(args[0]), (n, answer) => n.admin('Finalize', {}, answer))];
      case 'partition': {
        const groups = args.join(' ').split('|').map((g) => ids(g.trim()));
        this.w.network.partition(groups);
        return [];
      }
      case 'cut':
        this.w.network.cut(int(args[0]), int(args[1]));
        return [];
      case 'heal':
        this.w.network.heal();
        return [];
      case 'crash':
        this.w.crash(int(args[0]));
        return [];
      case 'restart':
        this.w.restart(int(args[0]));
        await this.w.drainAll();
        return [];
      case 'stop':
        this.w.remove(int(args[0]));
        return [];
      case 'wipe':
        this.w.wipe(int(args[0]), args[1] !== 'unprotected');
        await this.w.drainAll();
        return [];
      case 'log': {
        this.logging = args[0] !== 'off';
        this.w.watcher = this.logging
          ? {
              delivered: (to, m) => {
                if (m.type !== 'heartbeat' && m.type !== 'heartbeatReply') this.events.push(`t${this.w.now} deliver ${describeMessage(m)}`);
              },
              readied: (id, rd) => {
                const what = describeReady(rd);
                if (what !== undefined) this.events.push(`t${this.w.now} n${id} ready ${what}`);
              },
            }
          : undefined;
        return [];
      }
      case 'violations': {
        const found = this.w.agreement.violations;
        return found.length === 0 ? ['none'] : found.map((v) => `${v.kind}: ${v.message}`);
      }
      default:
        throw new Error(`unknown command ${name}`);
    }
  }

  private async client(kind: 'put' | 'get', id: NodeId, key: string, value: string | undefined): Promise<string[]> {
    const node = this.w.node(id);
    if (!node?.up) return [`n${id} is down`];
    const what = kind === 'put' ? `put(${key},${value ?? ''})` : `get(${key})`;
    this.pending++;
    const reply = (r: NodeReply): void => {
      this.pending--;
      this.replies.push(`reply ${what} on n${id}: ${describeReply(r)}`);
    };
    // One client per request: a node answers one outstanding request per client session.
    if (kind === 'put') node.propose(`s${++this.seq}`, 1, { type: 'put', key, value: value ?? '' }, reply);
    else node.read(key, reply);
    await this.w.drainAll();
    return [];
  }

  /** Why the world is not quiet yet, or undefined. */
  private unstable(): string | undefined {
    const leader = this.w.leader();
    if (leader === undefined) return 'no leader';
    for (const id of this.w.ids()) {
      const s = this.w.status(id);
      if (s === undefined) continue;
      if (id === leader.id) continue;
      // Members of the leader's configuration, and nodes that believe they are members (a new
      // node catching up, a removed node that came back), must follow the leader at its commit.
      const member = leader.config.members.includes(id) || (leader.config.prior ?? []).includes(id) || s.config.members.includes(id);
      if (member && (s.role !== 'follower' || s.commit !== leader.commit || s.leader !== leader.id)) return `n${id} not following at the leader's commit`;
    }
    if (leader.transferring) return 'transfer in flight';
    if (leader.commit < leader.lastSlot) return 'leader has entries not chosen yet';
    return this.pending > 0 ? 'requests pending' : undefined;
  }

  private status(): string[] {
    return this.w.ids().map((id) => {
      const s = this.w.status(id);
      if (s === undefined) return `n${id}: down`;
      const role = s.role === 'follower' ? `follower of ${s.leader === undefined ? 'none' : `n${s.leader}`}` : s.role;
      const loss = s.dataLoss === 'none' ? '' : `, data loss: ${s.dataLoss}`;
      return `n${id}: ${role}, ${describeConfig(s.config)}, fence ${s.fenceEpoch}, commit ${s.commit}, snapshot ${s.snapshotIndex}${loss}`;
    });
  }
}

/**
 * An admin call through the admin service's handler; the answer is what the handler called back
 * with once the world settled (a finalize answers only once its entry is applied: `pending`).
 */
async function admin(world: World, id: NodeId, call: (n: SimNode, answer: (r: AdminReply) => void) => void): Promise<string> {
  const n = world.node(id);
  if (!n?.up) return `n${id} is down`;
  let reply: AdminReply | undefined;
  call(n, (r) => (reply = r));
  await world.drainAll();
  const r = reply as AdminReply | undefined;
  return r === undefined ? 'pending' : r.ok ? 'ok' : `refused: ${r.error}`;
}

const b = (x: Ballot): string => `b${x.round}.${x.node}`;
const slots = (entries: readonly Entry[]): string => `[${entries.map((e) => `${e.slot}:${describeCommand(e)}`).join(' ')}]`;

function describeCommand(e: Entry): string {
  const c = e.command;
  if (c.kind === 'noop') return 'noop';
  if (c.kind === 'finalize') return `finalize(e${c.config.epoch})`;
  const op = c.op;
  return op.type === 'put' ? `put(${op.key},${op.value})` : op.type;
}

/** One line per message, the fields that matter for the protocol. */
function describeMessage(m: Message): string {
  const head = `n${m.from}->n${m.to} ${m.type}`;
  switch (m.type) {
    case 'prevote':
      return `${head} round ${m.round} commit ${m.commit}`;
    case 'prevoteReply':
      return `${head} round ${m.round} ${m.granted ? 'granted' : 'refused'}`;
    case 'prepare':
      return `${head} ${b(m.ballot)} from ${m.fromSlot}`;
    case 'promise':
      return `${head} ${b(m.ballot)} ${m.ok ? 'ok' : `refused (promised ${b(m.promised)})`} accepted ${slots(m.accepted)} commit ${m.commit}`;
    case 'accept':
      return `${head} ${b(m.ballot)} ${slots(m.entries)} commit ${m.commit}`;
    case 'accepted':
      return `${head} ${b(m.ballot)} ${m.ok ? `${m.fromSlot}..${m.toSlot}` : `refused (promised ${b(m.promised)})`} commit ${m.commit}`;
    case 'catchupRequest':
      return `${head} from ${m.fromSlot}`;
    case 'catchupReply':
      return `${head} ${slots(m.entries)}${m.snapshot === undefined ? '' : ` snapshot ${m.snapshot.index}`} commit ${m.commit}`;
    default:
      return head;
  }
}

/** What a Ready held, or undefined for one that held only heartbeats. */
function describeReady(rd: Ready): string | undefined {
  const parts: string[] = [];
  if (rd.hardState !== undefined) parts.push(`hard(promised ${b(rd.hardState.promised)}, commit ${rd.hardState.commit}, e${rd.hardState.config.epoch})`);
  if (rd.snapshot !== undefined) parts.push(`snapshot ${rd.snapshot.index}`);
  if (rd.entries.length > 0) parts.push(`entries ${slots(rd.entries)}`);
  if (rd.committed.length > 0) parts.push(`committed ${slots(rd.committed)}`);
  const messages = rd.messages.filter((m) => m.type !== 'heartbeat' && m.type !== 'heartbeatReply');
  if (messages.length > 0) parts.push(`send ${messages.map((m) => `${m.type}->n${m.to}`).join(' ')}`);
  if (rd.readStates.length > 0) parts.push(`reads ${rd.readStates.map((r) => `${r.id}@${r.index}`).join(' ')}`);
  if (rd.droppedReads.length > 0) parts.push(`dropped reads ${rd.droppedReads.join(' ')}`);
  if (parts.length === 0) return undefined;
  return `${parts.join('; ')}${rd.mustSync ? ' (sync)' : ''}`;
}

function describeReply(r: NodeReply): string {
  if (r.kind === 'dropped') return 'dropped';
  if (r.kind === 'failed') return `failed: ${r.error}`;
  if (r.kind === 'refused') return `refused ${r.refusal.reason}${'leader' in r.refusal && r.refusal.leader !== undefined ? ` (leader n${r.refusal.leader})` : ''}`;
  return r.result.ok ? `ok ${JSON.stringify(r.result.value ?? null)}` : `${r.result.code} ${JSON.stringify(r.result.current ?? null)}`;
}

function config(args: readonly string[]): Config {
  const epoch = int(args[0]);
  const members = ids(args[1] ?? '');
  return args[2] === undefined ? { epoch, members } : { epoch, members, prior: ids(args[2]) };
}

function ids(s: string): NodeId[] {
  return s.split(',').filter((x) => x !== '').map(int);
}

function int(s: string | undefined): number {
  if (s === undefined || !/^\d+$/.test(s)) throw new Error(`expected a number, got ${s ?? 'nothing'}`);
  return Number(s);
}
