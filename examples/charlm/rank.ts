// Numerical rank of a weight update ΔW by Gram–Schmidt QR with column pivoting, in float64.
// Not an SVD: ml-matrix's SVD can loop forever on the matrices SBoRA makes (all but r columns
// exactly zero), while pivoted QR always ends after at most min(rows, cols) steps. A column is
// counted while its remaining norm is above tol times the largest column norm, which tracks
// "singular values above tol·σ_max" closely for the updates here.

export function pivotedQrRank(data: ArrayLike<number>, rows: number, cols: number, tol = 1e-4): number {
  if (data.length !== rows * cols) throw new Error(`pivotedQrRank: ${data.length} values, expected ${rows}·${cols}`);
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return Number.NaN;
  const c: Float64Array[] = [];
  for (let j = 0; j < cols; j++) {
    const col = new Float64Array(rows);
    for (let i = 0; i < rows; i++) col[i] = data[i * cols + j];
    c.push(col);
  }
  const norm2 = (v: Float64Array) => v.reduce((a, x) => a + x * x, 0);
  const first = Math.sqrt(Math.max(0, ...c.map(norm2)));
  if (first === 0) return 0;
  const done = new Array<boolean>(cols).fill(false);
  let rank = 0;
  for (let step = 0; step < Math.min(rows, cols); step++) {
    let best = -1;
    let bestNorm = 0;
    for (let j = 0; j < cols; j++) {
      if (done[j]) continue;
      const n = norm2(c[j]);
      if (n > bestNorm) {
        bestNorm = n;
        best = j;
      }
    }
    if (best < 0 || Math.sqrt(bestNorm) <= tol * first) break;
    done[best] = true;
    rank++;
    const q = c[best];
    const inv = 1 / Math.sqrt(bestNorm);
    for (let i = 0; i < rows; i++) q[i] *= inv;
    // Two passes of orthogonalisation keep the remaining columns orthogonal in floating point.
    for (let pass = 0; pass < 2; pass++) {
      for (let j = 0; j < cols; j++) {
        if (done[j]) continue;
        const v = c[j];
        let dot = 0;
        for (let i = 0; i < rows; i++) dot += q[i] * v[i];
        for (let i = 0; i < rows; i++) v[i] -= dot * q[i];
      }
    }
  }
  return rank;
}
