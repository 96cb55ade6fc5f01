/**
 * The access log's C line builder (native/access-line.c) as a thread uses it.
 *
 * A call into C pays for each argument it reads: a string is copied out of
 * the V8 heap, a Buffer's memory looked up. A line used to hand over two
 * Buffers and seven strings; perf put about half of the call in reading them.
 * What stays the same from line to line is now handed over once: the buffer
 * lines go to (told again only when the sink's buffer changes), and the names
 * a line shows (upstream address, flag, route, pool), which come from the
 * config and the error catalogue and are kept in C by number. The method is
 * read from the request head, as the path is. A line then hands over the
 * head, the client's address and the request ID.
 *
 * Names are numbered in the order first seen, up to the addon's maxNames;
 * when a line could need more, the numbering starts again from 0 (the names
 * are few: a config's addresses, routes and pools, and the catalogue's flags,
 * so this happens only after many reloads). A name C cannot keep (1,024 units
 * or more) reads NO_NAME: C declines that line and JavaScript writes it.
 */
import { optionalHandoff } from '../primary/handoff'

/** What native/access-line.c's accessLineSetup returns. */
interface NativeLineFunctions {
  line: (pos: number, limit: number, src: Buffer, clientIp: string, requestId: string) => number
  target: (out: Buffer) => boolean
  name: (id: number, text: string) => boolean
  maxNames: number
}
type NativeLineSetup = (prefix: Buffer, bindings: Buffer, nums: Float64Array) => NativeLineFunctions | null

/** A name C does not have: the line is declined (-1 is "absent" for a route or a pool). */
export const NO_NAME = -2

/** Names a line can look up: address, flag, route, pool (each kind has its own one-entry cache). */
export const NAME_ADDRESS = 0
export const NAME_FLAG = 1
export const NAME_ROUTE = 2
export const NAME_POOL = 3
const NAME_KINDS = 4

export class NativeLineBuilder {
  private readonly fns: NativeLineFunctions
  /** The buffer C writes lines to (target). */
  private out: Buffer | null = null
  private readonly ids = new Map<string, number>()
  /** The last name looked up per kind, and its number: the same upstream, flag, route from line to line. */
  private readonly lastText: Array<string | null> = [null, null, null, null]
  private readonly lastId: number[] = [NO_NAME, NO_NAME, NO_NAME, NO_NAME]

  private constructor (fns: NativeLineFunctions) {
    this.fns = fns
  }

  /** This thread's builder, writing `prefix`, the time, `bindings` first and reading `nums`; null without the addon. */
  static setUp (prefix: Buffer, bindings: Buffer, nums: Float64Array): NativeLineBuilder | null {
    const addon = optionalHandoff() as unknown as { accessLineSetup?: NativeLineSetup } | null
    if (addon === null || typeof addon.accessLineSetup !== 'function') return null
    const fns = addon.accessLineSetup(prefix, bindings, nums)
    return fns === null ? null : new NativeLineBuilder(fns)
  }

  /** Before a line's names are looked up: room for all of them (so none is renumbered while the line is built). */
  makeRoom (): void {
    if (this.ids.size <= this.fns.maxNames - NAME_KINDS) return
    this.ids.clear()
    for (let k = 0; k < NAME_KINDS; k++) {
      this.lastText[k] = null
      this.lastId[k] = NO_NAME
    }
  }

  /** The number C knows `text` by, as a name of `kind`; NO_NAME when C cannot keep it. */
  nameId (kind: number, text: string): number {
    if (this.lastText[kind] === text) return this.lastId[kind]
    let id = this.ids.get(text)
    if (id === undefined) {
      id = this.ids.size
      if (id < this.fns.maxNames && this.fns.name(id, text)) this.ids.set(text, id)
      else id = NO_NAME
    }
    this.lastText[kind] = text
    this.lastId[kind] = id
    return id
  }

  /** The line into `out` at `pos` (never reaching `limit`); its end, or -1 when C declines it. */
  line (out: Buffer, pos: number, limit: number, src: Buffer, clientIp: string, requestId: string): number {
    if (out !== this.out) {
      if (!this.fns.target(out)) return -1
      this.out = out
    }
    return this.fns.line(pos, limit, src, clientIp, requestId)
  }
}
