/**
 * The request firewall: an ordered rule list evaluated once per request,
 * after the head is parsed and before rate limiting and balancing.
 *
 * The first matching deny or allow decides: deny returns the rule's index (the
 * proxy answers 403 SWY_ERR_FIREWALL_DENIED), allow returns -1 at once and
 * skips every later rule, the built-in set included. A matching log rule
 * writes a warning and evaluation goes on. Every matching rule counts a hit in
 * shared state; a deny also counts H_FIREWALL_BLOCKED.
 *
 * Per-request work is lazy and done at most once: the path is located only if
 * a rule looks at it, decoded only if it has '%' (or needs normalising), the
 * query only if a built-in rule runs, the client address parsed only for a
 * clientCidr rule. Requests are evaluated synchronously, so that scratch state
 * lives on the Firewall (one per thread), not in a per-request object. With no
 * regex and no header condition, an ordinary request allocates nothing.
 */
import type { FirewallConfig } from '../config/types'
import { logger } from '../log'
import { H_FIREWALL_BLOCKED } from '../shared/layout'
import type { SharedState } from '../shared/state'
import {
  BUILTIN_NUL,
  BUILTIN_SCRIPT_INJECTION,
  BUILTIN_SQL_INJECTION,
  BUILTIN_TRAVERSAL,
  QUERY_TRAVERSAL,
  SCRIPT_INJECTION,
  SQL_INJECTION,
  matchFrom,
} from './builtin'
import { parseIpInto, rangesContain, type CidrRange } from '../net/ip'
import { D_NUL, D_TRAVERSAL, TargetDecoder } from './decode'
import { ACTION_ALLOW, ACTION_DENY, CompiledRule, HEADER_ABSENT, compileRules } from './rules'
import { P_DECODE, P_NORMALISE, P_NUL, P_SUSPICIOUS, P_TRAVERSAL, Q_DECODE, Q_NUL, Q_SUSPICIOUS, pathStartOf, scanPath, scanQuery } from './target'
import type { FirewallLog, FirewallRequest, FirewallVerdict } from './types'

/** Not a rule index: evaluate() let the request through. */
export const FIREWALL_PASS = -1

export class Firewall {
  readonly rules: readonly CompiledRule[]
  private readonly state: SharedState
  private readonly log: FirewallLog
  private readonly decoder = new TargetDecoder()
  private readonly ipBytes = new Uint8Array(16)

  // ---- per request, reset by evaluate() ------------------------------------
  private target = ''
  private located = false
  private pathStart = 0
  private pathEnd = 0
  /** Index of the '?', or -1. */
  private queryStart = -1
  private pathReady = false
  private pathFlags = 0
  private pathDecoded = false
  /** The path to match is pathSource[pathFrom, pathTo): the raw target itself unless decoding was needed. */
  private pathSource = ''
  private pathFrom = 0
  private pathTo = 0
  /** The path as its own string, made only for a regex. */
  private pathString: string | null = null
  private queryReady = false
  private queryFlags = 0
  private queryDecoded: string | null = null
  /** 0 not parsed yet, -1 not an IP literal, else 4 or 16 bytes in ipBytes. */
  private ipFamily = 0

  constructor (rules: readonly CompiledRule[], state: SharedState, log: FirewallLog) {
    this.rules = rules
    this.state = state
    this.log = log
  }

  /** FIREWALL_PASS (-1) to let the request through, else the index of the denying rule. */
  evaluate (req: FirewallRequest): number {
    this.target = req.target
    this.located = false
    this.pathReady = false
    this.pathDecoded = false
    this.pathString = null
    this.queryReady = false
    this.queryDecoded = null
    this.ipFamily = 0
    const rules = this.rules
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i]
      if (!this.matches(rule, req)) continue
      this.state.addFirewallHit(i)
      if (rule.action === ACTION_ALLOW) return FIREWALL_PASS
      if (rule.action === ACTION_DENY) {
        this.state.addHeader(H_FIREWALL_BLOCKED, 1)
        return i
      }
      this.log.warn({ firewallRule: rule.verdict.ruleName, ruleIndex: i, method: req.method, target: req.target, clientIp: req.clientIp }, 'firewall log rule matched')
    }
    return FIREWALL_PASS
  }

  /** The rule's name for the access log ('' for an index that is not a rule). */
  ruleName (index: number): string {
    return index >= 0 && index < this.rules.length ? this.rules[index].verdict.ruleName : ''
  }

  /** The rule's action, index and name (a frozen object built once), or null. */
  verdict (index: number): FirewallVerdict | null {
    return index >= 0 && index < this.rules.length ? this.rules[index].verdict : null
  }

  /** Every rule in index order, for the admin API and metrics (hits: state.firewallHits(index)). */
  verdicts (): FirewallVerdict[] {
    return this.rules.map((rule) => rule.verdict)
  }

  private matches (rule: CompiledRule, req: FirewallRequest): boolean {
    if (rule.builtinKind !== 0) return this.builtinMatches(rule.builtinKind)
    // cheapest conditions first; the header last because header() may have to build a string
    if (rule.methods !== null && !methodListed(rule.methods, req.method)) return false
    if (rule.maxBodyBytes !== -1) {
      const length = req.bodyLength
      // -1 (unknown): over the limit for deny/log, not over for allow (see ./rules)
      if (length < 0 ? rule.action === ACTION_ALLOW : length <= rule.maxBodyBytes) return false
    }
    if (rule.needsPath && !this.pathMatches(rule)) return false
    if (rule.clientRanges !== null && !this.clientIn(rule.clientRanges, req.clientIp)) return false
    if (rule.headerName !== null && !headerMatches(rule, req.header(rule.headerName))) return false
    return true
  }

  private pathMatches (rule: CompiledRule): boolean {
    this.preparePath()
    const source = this.pathSource
    const from = this.pathFrom
    const length = this.pathTo - from
    const prefix = rule.pathPrefix
    if (prefix !== null && (length < prefix.length || !source.startsWith(prefix, from))) return false
    const exact = rule.pathExact
    if (exact !== null && (length !== exact.length || !source.startsWith(exact, from))) return false
    const regex = rule.pathRegex
    if (regex !== null) {
      if (this.pathString === null) this.pathString = from === 0 && length === source.length ? source : source.slice(from, from + length)
      if (!regex.test(this.pathString)) return false
    }
    return true
  }

  private clientIn (ranges: readonly CidrRange[], clientIp: string): boolean {
    if (this.ipFamily === 0) {
      const family = parseIpInto(clientIp, this.ipBytes)
      this.ipFamily = family === 0 ? -1 : family
    }
    return this.ipFamily !== -1 && rangesContain(ranges, this.ipBytes, this.ipFamily)
  }

  private builtinMatches (kind: number): boolean {
    switch (kind) {
      case BUILTIN_TRAVERSAL:
        this.preparePath()
        return (this.pathFlags & P_TRAVERSAL) !== 0 || this.queryMatches(QUERY_TRAVERSAL)
      case BUILTIN_NUL:
        this.preparePath()
        this.prepareQuery()
        return (this.pathFlags & P_NUL) !== 0 || (this.queryFlags & Q_NUL) !== 0
      case BUILTIN_SQL_INJECTION:
        return this.queryMatches(SQL_INJECTION)
      case BUILTIN_SCRIPT_INJECTION:
        this.preparePath()
        if (this.pathDecoded) {
          if (matchFrom(SCRIPT_INJECTION, this.pathSource, 0)) return true
        } else if ((this.pathFlags & P_SUSPICIOUS) !== 0) {
          // searches on into the raw query too: harmless, the query is checked anyway
          if (matchFrom(SCRIPT_INJECTION, this.target, this.pathStart)) return true
        }
        return this.queryMatches(SCRIPT_INJECTION)
      default:
        return false
    }
  }

  /** Does a signature match the query: decoded if it had escapes, else the raw bytes when any could match. */
  private queryMatches (pattern: RegExp): boolean {
    this.prepareQuery()
    if (this.queryDecoded !== null) return matchFrom(pattern, this.queryDecoded, 0)
    // from the '?' itself, so a signature anchored at a value's start sees a separator
    return (this.queryFlags & Q_SUSPICIOUS) !== 0 && matchFrom(pattern, this.target, this.queryStart)
  }

  private locate (): void {
    if (this.located) return
    this.located = true
    const target = this.target
    const start = pathStartOf(target)
    const query = target.indexOf('?', start)
    this.pathStart = start
    this.pathEnd = query === -1 ? target.length : query
    this.queryStart = query
  }

  private preparePath (): void {
    if (this.pathReady) return
    this.pathReady = true
    this.locate()
    const target = this.target
    const start = this.pathStart
    const end = this.pathEnd
    let flags = scanPath(target, start, end)
    if ((flags & (P_DECODE | P_NORMALISE)) !== 0) {
      const path = this.decoder.decodePath(target, start, end)
      const seen = this.decoder.flags
      if ((seen & D_TRAVERSAL) !== 0) flags |= P_TRAVERSAL
      if ((seen & D_NUL) !== 0) flags |= P_NUL
      this.pathDecoded = true
      this.setPath(path, 0, path.length)
    } else if (start === end) {
      this.setPath('/', 0, 1) // absolute-form without a path: RFC 9112 §3.2.2 reads it as '/'
    } else {
      this.setPath(target, start, end)
    }
    this.pathFlags = flags
  }

  private setPath (source: string, from: number, to: number): void {
    this.pathSource = source
    this.pathFrom = from
    this.pathTo = to
  }

  private prepareQuery (): void {
    if (this.queryReady) return
    this.queryReady = true
    this.locate()
    const query = this.queryStart
    if (query === -1) {
      this.queryFlags = 0
      return
    }
    const target = this.target
    let flags = scanQuery(target, query + 1, target.length)
    if ((flags & Q_DECODE) !== 0) {
      this.queryDecoded = this.decoder.decodeQuery(target, query + 1, target.length)
      if ((this.decoder.flags & D_NUL) !== 0) flags |= Q_NUL
    }
    this.queryFlags = flags
  }
}

/** Build the firewall for this thread. Throws ConfigError (control plane) for a section that cannot work. */
export function createFirewall (config: FirewallConfig, state: SharedState, log: FirewallLog = logger): Firewall {
  return new Firewall(compileRules(config), state, log)
}

/** `methods` is upper-cased at compile time; the common case is an exact hit. */
function methodListed (methods: readonly string[], method: string): boolean {
  for (let i = 0; i < methods.length; i++) {
    const listed = methods[i]
    if (listed === method || equalsUpperCased(listed, method)) return true
  }
  return false
}

function equalsUpperCased (upper: string, method: string): boolean {
  if (upper.length !== method.length) return false
  for (let i = 0; i < upper.length; i++) {
    let c = method.charCodeAt(i)
    if (c >= 0x61 && c <= 0x7a) c -= 0x20
    if (c !== upper.charCodeAt(i)) return false
  }
  return true
}

function headerMatches (rule: CompiledRule, value: string | null): boolean {
  if (value === null) return rule.headerPresence === HEADER_ABSENT
  if (rule.headerPresence === HEADER_ABSENT) return false
  if (rule.headerEquals !== null && value !== rule.headerEquals) return false
  if (rule.headerRegex !== null && !rule.headerRegex.test(value)) return false
  return true
}
