/** `xroad-sync demo`: the tour is demo/tour.ts; here it finds the CLI to run and prints. */
import { isSea } from 'node:sea';
import { runTour } from '../demo/tour.js';
import { noticeFrom, printLine, reportBlock } from '../util/output.js';

export async function demoCommand(): Promise<number> {
  // The single executable (scripts/build-exe.sh) is the program itself: argv[1] repeats its path.
  const self = isSea() ? undefined : process.argv[1];
  if (!self && !isSea()) {
    noticeFrom('demo', 'cannot tell which script is running (process.argv[1] is empty)');
    return 1;
  }
  return runTour(self, { line: printLine, failed: (report) => reportBlock(report, 'demo', { blankBefore: true }) });
}
