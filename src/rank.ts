// Rank analysis of a weight update ΔW on the CPU. The SVD comes from ml-matrix (well kept, pure
// JavaScript, runs in browsers too) rather than a hand-written one.

import { Matrix, SingularValueDecomposition } from 'ml-matrix';

/** Singular values of a row-major [rows, cols] matrix, largest first. */
export function singularValues(data: ArrayLike<number>, rows: number, cols: number): number[] {
  if (data.length !== rows * cols) throw new Error(`singularValues: ${data.length} values, expected ${rows}·${cols}`);
  const m = new Matrix(rows, cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) m.set(i, j, data[i * cols + j]);
  const svd = new SingularValueDecomposition(m, { computeLeftSingularVectors: false, computeRightSingularVectors: false, autoTranspose: true });
  return [...svd.diagonal].sort((a, b) => b - a);
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
