/**
 * The benchmark's chart: writes/s vs concurrency (linear axis) and p99 latency vs
 * concurrency (log axis), one line per system, drawn with the tiny canvas in png.ts.
 */
import { Canvas, type Rgb } from './png.js';

export interface Series {
  readonly name: string;
  readonly color: Rgb;
  /** One value per concurrency level; null where not measured. */
  readonly wps: readonly (number | null)[];
  readonly p99: readonly (number | null)[];
}

export interface ChartInput {
  readonly title: string;
  readonly concurrency: readonly number[];
  readonly series: readonly Series[];
  /** Footer lines (machine, floor, caveats). */
  readonly notes: readonly string[];
  /** Optional horizontal reference line on the latency panel, e.g. the physical floor. */
  readonly floorMs?: number;
}

const INK: Rgb = [30, 30, 30];
const GRID: Rgb = [225, 225, 225];
const AXIS: Rgb = [120, 120, 120];
const FLOOR: Rgb = [40, 160, 60];

export const OURS_COLOR: Rgb = [31, 102, 196];
export const ETCD_COLOR: Rgb = [230, 120, 20];

/** A "nice" upper bound for a linear axis and its tick step. */
function niceScale(max: number, ticks = 5): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.2 };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  return { top: Math.ceil(max / step) * step, step };
}

function fmt(v: number): string {
  if (v >= 10_000) return `${Math.round(v / 1000)}K`;
  if (v >= 1000) return `${(v / 1000).toFixed(1).replace(/\.0$/, '')}K`;
  if (v >= 10) return String(Math.round(v));
  if (v >= 1) return v.toFixed(1).replace(/\.0$/, '');
  return v.toPrecision(1);
}

interface Panel {
  readonly x: number;
  readonly y: number;
  readonly w: number;
  readonly h: number;
}

function drawPanel(
  cv: Canvas,
  p: Panel,
  title: string,
  yLabel: string,
  xs: readonly number[],
  lines: readonly { color: Rgb; values: readonly (number | null)[] }[],
  log: boolean,
  refLine?: { value: number; label: string },
): void {
  cv.text(p.x + (p.w - Canvas.textWidth(title, 2)) / 2, p.y - 30, title, INK, 2);
  const all = lines.flatMap((l) => l.values).filter((v): v is number => v !== null && v > 0);
  if (refLine) all.push(refLine.value);
  let toY: (v: number) => number;
  const ticks: number[] = [];
  if (log) {
    const lo = Math.floor(Math.log10(Math.max(Math.min(...all, 1), 0.01)));
    const hi = Math.ceil(Math.log10(Math.max(...all, 10)));
    toY = (v) => p.y + p.h - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * p.h;
    for (let e = lo; e <= hi; e++) for (const m of [1, 2, 5]) if (e + Math.log10(m) <= hi) ticks.push(m * 10 ** e);
  } else {
    const { top, step } = niceScale(Math.max(...all, 1) * 1.08);
    toY = (v) => p.y + p.h - (v / top) * p.h;
    for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);
  }
  for (const t of ticks) {
    const y = toY(t);
    cv.line(p.x, y, p.x + p.w, y, GRID, 1);
    const label = fmt(t);
    cv.text(p.x - 8 - Canvas.textWidth(label, 2), y - 7, label, INK, 2);
  }
  cv.line(p.x, p.y, p.x, p.y + p.h, AXIS, 2);
  cv.line(p.x, p.y + p.h, p.x + p.w, p.y + p.h, AXIS, 2);
  cv.textVertical(p.x - 80, p.y + p.h / 2 + Canvas.textWidth(yLabel, 2) / 2, yLabel, INK, 2);
  const toX = (i: number): number => p.x + 40 + (i * (p.w - 80)) / Math.max(1, xs.length - 1);
  xs.forEach((c, i) => {
    const label = String(c);
    cv.line(toX(i), p.y + p.h, toX(i), p.y + p.h + 6, AXIS, 2);
    cv.text(toX(i) - Canvas.textWidth(label, 2) / 2, p.y + p.h + 12, label, INK, 2);
  });
  const xl = 'CONCURRENT CLIENTS (IN-FLIGHT PUTS)';
  cv.text(p.x + (p.w - Canvas.textWidth(xl, 2)) / 2, p.y + p.h + 36, xl, INK, 2);
  if (refLine) {
    const y = toY(refLine.value);
    cv.line(p.x, y, p.x + p.w, y, FLOOR, 2, 6);
    cv.text(p.x + p.w - Canvas.textWidth(refLine.label, 2) - 4, y - 20, refLine.label, FLOOR, 2);
  }
  lines.forEach((l, li) => {
    let prev: [number, number] | undefined;
    l.values.forEach((v, i) => {
      if (v === null || !(v > 0 || !log)) {
        prev = undefined;
        return;
      }
      const pt: [number, number] = [toX(i), toY(v)];
      if (prev) cv.line(prev[0], prev[1], pt[0], pt[1], l.color, 3);
      prev = pt;
    });
    l.values.forEach((v, i) => {
      if (v === null || !(v > 0 || !log)) return;
      cv.disc(toX(i), toY(v), 5, l.color);
      const label = fmt(v);
      // above the point when this series is the higher one here, else below; on a white box
      const others = lines.filter((_, j) => j !== li).map((o) => o.values[i] ?? null).filter((o): o is number => o !== null);
      const above = others.length === 0 || v > Math.max(...others) || (v === Math.max(...others) && li > 0);
      const ly = above ? toY(v) - 26 : toY(v) + 10;
      const w = Canvas.textWidth(label, 2);
      const lx = i === xs.length - 1 ? toX(i) - 9 - w : toX(i) + 9;
      cv.fillRect(lx - 2, ly - 2, w + 4, 18, [255, 255, 255]);
      cv.text(lx, ly, label, l.color, 2);
    });
  });
}

/** Renders the chart and returns PNG bytes. */
export function renderChart(input: ChartInput): Buffer {
  const W = 1400;
  const H = 640 + input.notes.length * 22;
  const cv = new Canvas(W, H);
  cv.text((W - Canvas.textWidth(input.title, 3)) / 2, 18, input.title, INK, 3);
  // legend
  let lx = W / 2 - 220;
  for (const s of input.series) {
    cv.line(lx, 70, lx + 40, 70, s.color, 3);
    cv.disc(lx + 20, 70, 5, s.color);
    cv.text(lx + 50, 63, s.name, INK, 2);
    lx += 60 + Canvas.textWidth(s.name, 2) + 40;
  }
  const top = 140;
  const ph = 380;
  drawPanel(
    cv,
    { x: 130, y: top, w: 520, h: ph },
    'THROUGHPUT (HIGHER IS BETTER)',
    'WRITES/S',
    input.concurrency,
    input.series.map((s) => ({ color: s.color, values: s.wps })),
    false,
  );
  drawPanel(
    cv,
    { x: 840, y: top, w: 520, h: ph },
    'P99 LATENCY, LOG SCALE (LOWER IS BETTER)',
    'P99 MS',
    input.concurrency,
    input.series.map((s) => ({ color: s.color, values: s.p99 })),
    true,
    input.floorMs !== undefined && input.floorMs > 0 ? { value: input.floorMs, label: `FLOOR ${input.floorMs.toFixed(2)} MS` } : undefined,
  );
  input.notes.forEach((n, i) => cv.text(40, top + ph + 80 + i * 22, n, AXIS, 2));
  return cv.toPng();
}
