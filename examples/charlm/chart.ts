// A dependency-free SVG line chart of loss curves, shared by the Node script (written to a file)
// and the browser demo (set as innerHTML, redrawn as points arrive).

export interface Series {
  name: string;
  points: [number, number][];
  color?: string;
  dashed?: boolean;
}

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#7f7f7f'];

function niceTicks(lo: number, hi: number, count: number): number[] {
  const span = hi - lo || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

// SVG has no text measurement outside a live DOM and this chart is also written from Node, so
// label widths are estimated from per-character classes of a sans-serif face. The estimate errs
// wide (capitals and digits), which costs a few pixels of legend but never cuts a label.
function textWidth(s: string, fontSize: number): number {
  let em = 0;
  for (const ch of s) {
    if (/[iljI.,:;'|!() ]/.test(ch)) em += 0.32;
    else if (/[mwMW@%]/.test(ch)) em += 0.9;
    else if (/[A-Z0-9#_₊π]/.test(ch)) em += 0.68;
    else em += 0.56;
  }
  return em * fontSize;
}

/** Greedy word wrap to `max` px; a word longer than a line is broken between characters. */
function wrap(text: string, max: number, fontSize: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const next = line ? `${line} ${word}` : word;
    if (textWidth(next, fontSize) <= max) {
      line = next;
      continue;
    }
    if (line) lines.push(line);
    line = '';
    for (const ch of word) {
      if (line && textWidth(line + ch, fontSize) > max) {
        lines.push(line);
        line = '';
      }
      line += ch;
    }
  }
  if (line) lines.push(line);
  return lines.length ? lines : [''];
}

function multiline(x: number, y: number, lines: string[], lineHeight: number, attrs: string): string {
  const spans = lines.map((l, k) => `<tspan x="${x}" dy="${k ? lineHeight : 0}">${esc(l)}</tspan>`).join('');
  return `<text x="${x}" y="${y}"${attrs}>${spans}</text>`;
}

export interface ChartOptions {
  title?: string;
  width?: number;
  height?: number;
  xLabel?: string;
  yLabel?: string;
  /**
   * Shown instead of axes while no series has a point: empty axes scaled 0 to 1 say nothing,
   * a sentence can say what will appear and how to start.
   */
  empty?: string;
}

const FONT = 12;
const LINE = 15;
const SWATCH = 36;

export function lossChartSvg(series: Series[], opts: ChartOptions = {}): string {
  const W = opts.width ?? 720;
  const H = opts.height ?? 400;
  const top = opts.title ? 32 : 14;
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="system-ui, sans-serif" font-size="${FONT}">`,
  );
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  if (opts.title) parts.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(opts.title)}</text>`);
  if (pts.length === 0 && opts.empty !== undefined) {
    const lines = wrap(opts.empty, W * 0.7, 14);
    const y = top + (H - top) / 2 - ((lines.length - 1) * 19) / 2;
    parts.push(`<rect x="16" y="${top + 6}" width="${W - 32}" height="${H - top - 22}" rx="8" fill="#fafafa" stroke="#ccc" stroke-dasharray="6 4"/>`);
    parts.push(multiline(W / 2, y, lines, 19, ' class="empty" text-anchor="middle" dominant-baseline="middle" font-size="14" fill="#555"'));
    parts.push('</svg>');
    return parts.join('\n');
  }

  // The legend column is as wide as its longest label needs, up to 40 % of the chart; longer
  // labels wrap onto further lines rather than run past the edge.
  const maxLegend = Math.round(W * 0.4);
  const labelRoom = Math.min(maxLegend - SWATCH - 10, Math.max(60, ...series.map((s) => textWidth(s.name, FONT))));
  const legendLines = series.map((s) => wrap(s.name, labelRoom, FONT));
  const m = { left: 56, right: Math.ceil(labelRoom + SWATCH + 16), top, bottom: 42 };
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const x0 = xs.length ? Math.min(...xs) : 0;
  const x1 = xs.length ? Math.max(...xs) : 1;
  let y0 = ys.length ? Math.min(...ys) : 0;
  let y1 = ys.length ? Math.max(...ys) : 1;
  const pad = (y1 - y0) * 0.05 || 0.1;
  y0 -= pad;
  y1 += pad;
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const sx = (x: number) => m.left + ((x - x0) / (x1 - x0 || 1)) * pw;
  const sy = (y: number) => m.top + (1 - (y - y0) / (y1 - y0 || 1)) * ph;
  for (const t of niceTicks(y0, y1, 6)) {
    const y = sy(t).toFixed(1);
    parts.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${t}</text>`);
  }
  for (const t of niceTicks(x0, x1, 8)) {
    const x = sx(t).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${m.top + ph}" y2="${m.top + ph + 4}" stroke="#333"/>`);
    parts.push(`<text x="${x}" y="${m.top + ph + 16}" text-anchor="middle">${t}</text>`);
  }
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  if (opts.xLabel) parts.push(`<text x="${m.left + pw / 2}" y="${H - 8}" text-anchor="middle">${esc(opts.xLabel)}</text>`);
  if (opts.yLabel) parts.push(`<text transform="translate(14 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(opts.yLabel)}</text>`);
  // Entries that would run below the plot are summed up in one last line instead.
  let ly = m.top + 10;
  const bottom = m.top + ph;
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const good = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (good.length > 0) {
      const d = good.map(([x, y], k) => `${k ? 'L' : 'M'}${sx(x).toFixed(1)} ${sy(y).toFixed(1)}`).join('');
      parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`);
    }
  });
  let shown = 0;
  for (const [i, s] of series.entries()) {
    const lines = legendLines[i];
    const needed = (lines.length - 1) * LINE + (i < series.length - 1 ? LINE + 3 : 0);
    if (ly + needed > bottom) break;
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const lx = m.left + pw + 10;
    parts.push(
      `<line x1="${lx}" x2="${lx + 20}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`,
    );
    parts.push(multiline(lx + 26, ly, lines, LINE, ' class="legend" dominant-baseline="middle"'));
    ly += lines.length * LINE + 3;
    shown++;
  }
  if (shown < series.length)
    parts.push(`<text class="legend" x="${m.left + pw + 10}" y="${ly}" dominant-baseline="middle" fill="#555">+${series.length - shown} more</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}
