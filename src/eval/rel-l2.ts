/**
 * The relative L2 error every accuracy claim in this project is stated in: ‖out − ref‖ / ‖ref‖, summed in
 * float64. Tests, `tgate convert --verify` and the benchmarks all use this one function.
 */

/** ‖out − ref‖ / ‖ref‖ in float64; the absolute ‖out − ref‖ when `ref` is all zeros (so equal inputs give 0). */
export function relL2(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (out.length !== ref.length) throw new Error(`relL2: length mismatch: ${out.length} values vs ${ref.length} in the reference`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = out[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num) / Math.sqrt(den);
}
