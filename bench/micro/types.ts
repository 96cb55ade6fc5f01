/**
 * A micro-benchmark suite: cases measured side by side in one tinybench run,
 * switchyard's implementation next to a naive alternative so the table shows
 * the gain. Each bench/micro/<area>.ts exports `suites: MicroSuite[]`;
 * bench/micro.ts finds and runs them.
 */
export interface MicroCase {
  name: string
  fn: () => void
}

export interface MicroSuite {
  name: string
  cases: MicroCase[]
}
