/**
 * The run's trace: the last `capacity` events for a violation report, and every event to `sink`
 * in verbose mode. Lines are prefixed with the tick so that two runs of one seed diff cleanly.
 */
export class Trace {
  private readonly ring: string[] = [];
  private next = 0;

  constructor(
    private readonly capacity = 60,
    private readonly sink?: (line: string) => void,
  ) {}

  /** Records one event at tick `now`. */
  log(now: number, text: string): void {
    const line = `${String(now).padStart(5)} ${text}`;
    this.sink?.(line);
    if (this.ring.length < this.capacity) this.ring.push(line);
    else this.ring[this.next] = line;
    this.next = (this.next + 1) % this.capacity;
  }

  /** The retained events, oldest first. */
  tail(): string[] {
    return this.ring.length < this.capacity ? this.ring.slice() : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
  }
}
