/**
 * Where CPU time went during a timed phase, from Linux's /proc: this process's main thread, its other
 * threads (XNNPACK's pool workers, V8's GC helpers) and every other process on the machine. Wall time alone
 * cannot tell "our second thread sat idle" from "another job took the core": on a shared 2-core machine both
 * look the same, and this says which it was.
 */
import { readFileSync, readdirSync } from 'node:fs';

/** One reading: seconds of CPU (user + system) per thread of this process, and busy seconds of the machine. */
export interface CpuReading {
  wall: number;
  threads: Map<number, number>;
  machine: number;
}

/** CPU seconds of one phase, split by who used them. */
export interface CpuSplit {
  wall: number;
  /** Seconds of this process's main thread (JS, TF.js's bookkeeping, single-threaded kernels, the pool's thread 0). */
  main: number;
  /** Seconds of this process's other threads, together. */
  otherThreads: number;
  /** The busiest of those threads (with two XNNPACK threads: the pool's worker). */
  busiestOther: number;
  /** Seconds the rest of the machine was busy: other processes (and the kernel on their behalf). */
  elsewhere: number;
}

const HZ = 100; // USER_HZ: Linux reports /proc times in 1/100 s on every architecture Node runs on.

/** utime + stime of a /proc stat line, in seconds (fields 14 and 15; the name in parentheses may hold spaces). */
function statSeconds(line: string): number {
  const f = line.slice(line.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / HZ;
}

/** Busy seconds of the whole machine: user, nice, system, irq, softirq (not idle, iowait, steal; guest is inside user). */
function machineSeconds(): number {
  const [, ...cols] = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/);
  const v = cols.map(Number);
  return (v[0]! + v[1]! + v[2]! + (v[5] ?? 0) + (v[6] ?? 0)) / HZ;
}

/** A reading now, or null where /proc is not there (not Linux). */
export function readCpu(): CpuReading | null {
  try {
    const threads = new Map<number, number>();
    for (const tid of readdirSync('/proc/self/task')) {
      try { threads.set(Number(tid), statSeconds(readFileSync(`/proc/self/task/${tid}/stat`, 'utf8'))); } catch { /* thread ended */ }
    }
    return { wall: performance.now() / 1000, threads, machine: machineSeconds() };
  } catch {
    return null;
  }
}

/** What happened between two readings (null when either is). */
export function cpuSplit(a: CpuReading | null, b: CpuReading | null): CpuSplit | null {
  if (!a || !b) return null;
  let main = 0;
  let otherThreads = 0;
  let busiestOther = 0;
  for (const [tid, s] of b.threads) {
    const d = s - (a.threads.get(tid) ?? 0);
    if (tid === process.pid) main = d;
    else { otherThreads += d; busiestOther = Math.max(busiestOther, d); }
  }
  const elsewhere = Math.max(0, b.machine - a.machine - main - otherThreads);
  return { wall: b.wall - a.wall, main, otherThreads, busiestOther, elsewhere };
}

/** "main 2.1 s, other threads 1.9 s (busiest 1.8), elsewhere 0.1 s" for logs. */
export function formatSplit(s: CpuSplit | null): string {
  if (!s) return 'per-thread CPU not available';
  return `main thread ${s.main.toFixed(2)} s, other threads ${s.otherThreads.toFixed(2)} s (busiest ${s.busiestOther.toFixed(2)}), other processes ${s.elsewhere.toFixed(2)} s`;
}

/** Other processes' CPU during a phase, in cores (NaN without /proc). */
export function coresElsewhere(s: CpuSplit | null): number {
  return s && s.wall > 0 ? s.elsewhere / s.wall : NaN;
}

/**
 * Waits until the rest of the machine has used less than `cores` of CPU over `windowSeconds`, at most
 * `maxSeconds`: a timed phase on a shared machine then starts while nobody else runs (it can still be
 * disturbed later, which its own split shows). Returns the seconds waited and the last load seen, in cores.
 */
export async function waitForIdle(maxSeconds: number, cores = 0.1, windowSeconds = 2): Promise<{ waited: number; cores: number }> {
  const start = performance.now();
  let seen = NaN;
  for (;;) {
    const r0 = readCpu();
    await new Promise((resolve) => setTimeout(resolve, windowSeconds * 1000));
    seen = coresElsewhere(cpuSplit(r0, readCpu()));
    const waited = (performance.now() - start) / 1000;
    if (!(seen >= cores) || waited >= maxSeconds) return { waited, cores: seen };
  }
}

/** A cheap reading for per-step figures: this process's CPU (all threads) and the machine's busy seconds. */
export interface LoadReading { wall: number; own: number; machine: number }

export function readLoad(): LoadReading | null {
  try {
    const u = process.cpuUsage();
    return { wall: performance.now() / 1000, own: (u.user + u.system) / 1e6, machine: machineSeconds() };
  } catch {
    return null;
  }
}

/** Other processes' CPU between two cheap readings, in cores (NaN when either is null). */
export function loadElsewhere(a: LoadReading | null, b: LoadReading | null): number {
  if (!a || !b || b.wall <= a.wall) return NaN;
  return Math.max(0, b.machine - a.machine - (b.own - a.own)) / (b.wall - a.wall);
}
