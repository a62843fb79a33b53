/**
 * Keeps V8's memory reducer working in an idle daemon under Node 24.
 *
 * When the mutator goes idle, V8's memory reducer (an 8 s timer) runs
 * memory-reducing mark-compacts that shrink the heap back to its live size
 * and release pooled pages. It starts one only while every allocation rate it
 * samples is low. Since V8 13.1 (Node 24) the rate of allocations on the
 * C++ heap (cppgc) is an exponentially decayed throughput with no floor:
 * a process that never allocates there reads exactly 0, which V8 takes as
 * the highest rate ("high alloc" on every tick), so the reducer never starts.
 * Only its watchdog would (100 s after the last full GC), and a daemon whose
 * passes come closer than that never reaches it: the old generation stays at
 * the size the last pass's garbage left it. Node 22 and older floor the rate
 * at 1 byte/ms and are not affected.
 *
 * Compiling a `vm.Script` allocates one small object on the C++ heap (Node's
 * ContextifyScript), so the sampled rate is tiny but above zero, and the
 * reducer sees "low alloc" again once the daemon is idle. A few
 * microseconds of CPU every few seconds.
 */
import vm from 'node:vm';

/** Starts the nudge (unref'd: it never keeps the process alive); call the result to stop it. */
export function keepMemoryReducerAwake(everyMs = 4_000): () => void {
  const timer = setInterval(() => new vm.Script(''), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
