// Rank analysis of a weight update ΔW on the CPU. The SVD comes from ml-matrix (well kept, pure
// JavaScript, runs in browsers too) rather than a hand-written one.

import { Matrix, SingularValueDecomposition } from 'ml-matrix';

/**
 * Singular values of a row-major [rows, cols] matrix, largest first (min(rows, cols) of them).
 * All-zero rows and columns are dropped before the SVD, which leaves the nonzero singular values
 * unchanged: SBoRA's ΔW is zero outside r columns or rows, and ml-matrix's QR iteration was seen to
 * spin without end on such a matrix at full size, while the compact one is r wide and quick.
 */
export function singularValues(data: ArrayLike<number>, rows: number, cols: number): number[] {
  if (data.length !== rows * cols) throw new Error(`singularValues: ${data.length} values, expected ${rows}·${cols}`);
  const liveRows: number[] = [];
  const colLive = new Uint8Array(cols);
  for (let i = 0; i < rows; i++) {
    let any = false;
    for (let j = 0; j < cols; j++) {
      const v = data[i * cols + j];
      if (!Number.isFinite(v)) throw new Error(`singularValues: element [${i}, ${j}] is ${v}; the matrix must be finite`);
      if (v !== 0) {
        any = true;
        colLive[j] = 1;
      }
    }
    if (any) liveRows.push(i);
  }
  const liveCols: number[] = [];
  for (let j = 0; j < cols; j++) if (colLive[j]) liveCols.push(j);
  const out = new Array<number>(Math.min(rows, cols)).fill(0);
  if (liveRows.length === 0) return out;
  const m = new Matrix(liveRows.length, liveCols.length);
  for (const [a, i] of liveRows.entries()) for (const [b, j] of liveCols.entries()) m.set(a, b, data[i * cols + j]);
  const svd = new SingularValueDecomposition(m, { computeLeftSingularVectors: false, computeRightSingularVectors: false, autoTranspose: true });
  const sv = [...svd.diagonal].sort((a, b) => b - a);
  for (let k = 0; k < sv.length; k++) out[k] = sv[k];
  return out;
}

export interface RankReport {
  /** Singular values above `threshold` (the BoRA paper's Figure 4 uses 0.005). */
  rank: number;
  /** Σ σ² = ‖ΔW‖²_F. */
  sumSquares: number;
  singularValues: number[];
}

export function rankReport(data: ArrayLike<number>, rows: number, cols: number, threshold = 0.005): RankReport {
  const sv = singularValues(data, rows, cols);
  return { rank: sv.filter((s) => s > threshold).length, sumSquares: sv.reduce((a, s) => a + s * s, 0), singularValues: sv };
}

/** Numerical rank: singular values above tol · σ_max (for rank tests independent of scale). */
export function numericalRank(data: ArrayLike<number>, rows: number, cols: number, tol = 1e-9): number {
  const sv = singularValues(data, rows, cols);
  if (sv.length === 0 || sv[0] === 0) return 0;
  return sv.filter((s) => s > tol * sv[0]).length;
}
