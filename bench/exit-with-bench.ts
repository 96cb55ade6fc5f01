/**
 * For the processes the load bench spawns (upstreams, the node:http proxy peer):
 * exit on SIGTERM/SIGINT, or when stdin closes. The bench holds stdin as a pipe
 * (bench/peers.ts, stdinPipe), so a killed bench does not leave them behind.
 */
import * as fs from 'node:fs'

export function exitWithBench (): void {
  const exit = (): void => process.exit(0)
  process.on('SIGTERM', exit)
  process.on('SIGINT', exit)
  // Only a pipe means "the bench is holding me": /dev/null would end at once.
  if (fs.fstatSync(0).isFIFO()) {
    process.stdin.on('end', exit)
    process.stdin.on('close', exit)
    process.stdin.resume()
  }
}
