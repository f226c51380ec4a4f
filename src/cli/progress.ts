/** Progress on stderr for the long commands. */

/** A one-line progress bar on stderr (plain lines when stderr is not a terminal). */
export function progressBar(label: string): (done: number, total: number, extra?: string) => void {
  let last = -1;
  return (done, total, extra = '') => {
    const pct = Math.floor((100 * done) / total);
    if (process.stderr.isTTY) {
      const w = 30;
      const fill = Math.round((w * done) / total);
      process.stderr.write(`\r${label} [${'#'.repeat(fill)}${'.'.repeat(w - fill)}] ${done}/${total} ${extra}`);
      if (done === total) process.stderr.write('\n');
    } else if (done > 0 && pct !== last && (pct % 25 === 0 || done === total)) {
      process.stderr.write(`${label} ${done}/${total} ${extra}\n`);
    }
    last = pct;
  };
}
