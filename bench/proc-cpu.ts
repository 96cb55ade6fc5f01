/**
 * CPU time of a process tree, from /proc: shared by the load, TLS and scaling benches.
 */
import * as fs from 'node:fs'
import { execFileSync } from 'node:child_process'

export const CLOCK_TICKS_PER_SEC = ((): number => {
  try {
    return Number.parseInt(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim(), 10) || 100
  } catch {
    return 100
  }
})()

interface ProcStat {
  ppid: number
  ticks: number
}

/** /proc/PID/stat: utime (field 14) + stime (15) cover every thread of the process. */
function readStat (pid: number): ProcStat | null {
  let text: string
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  // comm (field 2) may contain spaces and parentheses: split after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) }
}

/** CPU µs used so far by `pid` and its live descendants (nginx workers, etc.). */
export function cpuMicrosOfTree (pid: number): number {
  const children = new Map<number, number[]>()
  const ticks = new Map<number, number>()
  for (const entry of fs.readdirSync('/proc')) {
    const child = Number(entry)
    if (!Number.isInteger(child)) continue
    const stat = readStat(child)
    if (stat === null) continue
    ticks.set(child, stat.ticks)
    const siblings = children.get(stat.ppid)
    if (siblings === undefined) children.set(stat.ppid, [child])
    else siblings.push(child)
  }
  let total = 0
  const stack = [pid]
  while (stack.length > 0) {
    const current = stack.pop() as number
    total += ticks.get(current) ?? 0
    stack.push(...(children.get(current) ?? []))
  }
  return (total * 1e6) / CLOCK_TICKS_PER_SEC
}
