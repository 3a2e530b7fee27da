// Rank analysis on the CPU: singular values against matrices whose values are known in closed
// form, with all-zero rows and columns (SBoRA's ΔW shape) dropped before the SVD.

import { expect } from 'chai';
import { numericalRank, rankReport, singularValues } from '../src/rank.js';

function embed(rows: number, cols: number, at: [number, number, number][]): Float64Array {
  const d = new Float64Array(rows * cols);
  for (const [i, j, v] of at) d[i * cols + j] = v;
  return d;
}

describe('rank analysis', () => {
  it('finds 3√5 and √5 for [[3, 0], [4, 5]] spread over a 5×6 matrix of zeros', () => {
    const d = embed(5, 6, [
      [1, 2, 3],
      [3, 2, 4],
      [3, 5, 5],
    ]);
    const sv = singularValues(d, 5, 6);
    expect(sv).to.have.length(5);
    expect(sv[0]).to.be.closeTo(3 * Math.sqrt(5), 1e-12);
    expect(sv[1]).to.be.closeTo(Math.sqrt(5), 1e-12);
    expect(sv.slice(2)).to.deep.equal([0, 0, 0]);
    expect(numericalRank(d, 5, 6)).to.equal(2);
  });

  it('a scaled permutation has its entries as singular values; the zero matrix has rank 0', () => {
    const d = embed(4, 3, [
      [0, 2, -0.5],
      [2, 0, 7],
      [3, 1, 0.001],
    ]);
    expect(singularValues(d, 4, 3)).to.deep.equal([7, 0.5, 0.001]);
    const rep = rankReport(d, 4, 3);
    expect(rep.rank).to.equal(2);
    expect(rep.sumSquares).to.be.closeTo(49 + 0.25 + 1e-6, 1e-12);
    expect(numericalRank(new Float64Array(12), 4, 3)).to.equal(0);
  });

  it('an SBoRA-shaped update (r nonzero columns or rows of a 256×192 matrix) has rank r', () => {
    let seed = 7;
    const next = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 1e-3;
    const [m, n] = [256, 192];
    const cols = [5, 190, 17, 64, 3, 100, 151, 42];
    const fa = new Float32Array(m * n);
    for (let i = 0; i < m; i++) for (const j of cols) fa[i * n + j] = next();
    expect(numericalRank(fa, m, n)).to.equal(cols.length);
    const fb = new Float32Array(m * n);
    for (const i of cols.slice(0, 5)) for (let j = 0; j < n; j++) fb[i * n + j] = next();
    expect(numericalRank(fb, m, n)).to.equal(5);
  });

  it('rejects a wrong length and non-finite values', () => {
    expect(() => singularValues(new Float64Array(5), 2, 3)).to.throw(/5 values, expected 2·3/);
    expect(() => singularValues(embed(2, 2, [[1, 0, Number.NaN]]), 2, 2)).to.throw(/element \[1, 0\] is NaN/);
  });
});
