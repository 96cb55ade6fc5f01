/**
 * Configured rules compiled once per thread into monomorphic CompiledRule
 * objects (every field assigned, absent conditions as null / -1), so the
 * evaluate loop is one shape and does no parsing. Matching semantics:
 *
 * - A rule matches when ALL its given conditions match; a rule with none
 *   matches every request (a final catch-all deny or log).
 * - methods: ASCII case-insensitive. RFC 9110 §9.1 makes methods
 *   case-sensitive, but backends disagree (some upper-case them), and a deny on
 *   DELETE that 'delete' slips past is worse than also catching a method no
 *   standard backend serves.
 * - path: prefix and exact compare case-sensitively (RFC 3986 §6.2.2.1: the
 *   path is case-sensitive), regex as written (no flags; write [Aa] for
 *   either case). All three see the decoded, normalised path (./decode): no
 *   query, percent-decoding undone, dot segments removed, '\' read as '/',
 *   repeated slashes merged. A backend that ignores case (IIS, a
 *   case-insensitive file system) therefore needs a regex rule, not a prefix.
 * - header: `present: true` (the default when nothing else is given) needs the
 *   header, `present: false` needs it absent; `equals` compares the first value
 *   exactly; `regex` tests it. `equals`/`regex` never match an absent header.
 * - clientCidr: IPv4 and IPv6 ranges, IPv4-mapped IPv6 clients match IPv4 ranges.
 * - maxBodyBytes: matches a body larger than the limit. A length not known up
 *   front (bodyLength -1, chunked) is not trusted either way: it counts as over
 *   the limit for deny and log rules (a body nobody has measured is not assumed
 *   small) and as not over for allow rules (an allow is never granted on a size
 *   nobody checked). The proxy still cuts every streamed body at
 *   limits.maxBodyBytes.
 */
import type { FirewallConfig, FirewallRuleConfig } from '../config/types'
import { ConfigError } from '../errors'
import { parseCidr } from '../net/cidr'
import { MAX_FIREWALL_RULES } from '../shared/layout'
import { BUILTIN_RULES } from './builtin'
import type { CidrRange } from '../net/ip'
import type { FirewallAction, FirewallVerdict } from './types'
import { comparableHostOf } from '../http/field-syntax'

export const ACTION_ALLOW = 0
export const ACTION_DENY = 1
export const ACTION_LOG = 2

const ACTION_CODES: Record<FirewallAction, number> = { allow: ACTION_ALLOW, deny: ACTION_DENY, log: ACTION_LOG }

export const HEADER_ANY = -1
export const HEADER_ABSENT = 0
export const HEADER_PRESENT = 1

export class CompiledRule {
  readonly index: number
  readonly verdict: FirewallVerdict
  readonly action: number
  /** 0 for a configured rule; a BUILTIN_* kind for a built-in one (then no other condition is set). */
  readonly builtinKind: number
  /** Upper-cased; null = any method. */
  readonly methods: readonly string[] | null
  /** -1 = no size condition. */
  readonly maxBodyBytes: number
  readonly pathPrefix: string | null
  readonly pathExact: string | null
  readonly pathRegex: RegExp | null
  /** Lower-cased; null = no header condition. */
  readonly headerName: string | null
  readonly headerPresence: number
  readonly headerEquals: string | null
  readonly headerRegex: RegExp | null
  readonly clientRanges: readonly CidrRange[] | null
  /** Has a path condition, so the path must be located and maybe decoded. */
  readonly needsPath: boolean

  constructor (index: number, name: string, action: FirewallAction, builtinKind: number, config: FirewallRuleConfig | null) {
    this.index = index
    this.verdict = Object.freeze({ action, ruleIndex: index, ruleName: name })
    this.action = ACTION_CODES[action]
    this.builtinKind = builtinKind
    this.methods = config?.methods?.map((m) => m.toUpperCase()) ?? null
    this.maxBodyBytes = config?.maxBodyBytes ?? -1
    this.pathPrefix = config?.path?.prefix ?? null
    this.pathExact = config?.path?.exact ?? null
    this.pathRegex = config?.path?.regex === undefined ? null : new RegExp(config.path.regex)
    const header = config?.header
    this.headerName = header === undefined ? null : header.name.toLowerCase()
    this.headerPresence = header === undefined
      ? HEADER_ANY
      : header.present === false
        ? HEADER_ABSENT
        : header.present === true || (header.equals === undefined && header.regex === undefined) ? HEADER_PRESENT : HEADER_ANY
    // the proxy gives host conditions the host it routes by: lower case, no port, no trailing dot
    // (see ClientConnection.header), so a rule's host is compared in the same form
    this.headerEquals = header?.equals === undefined ? null : this.headerName === 'host' ? comparableHostOf(header.equals) : header.equals
    this.headerRegex = header?.regex === undefined ? null : new RegExp(header.regex)
    this.clientRanges = config?.clientCidr?.map(parseCidr) ?? null
    this.needsPath = this.pathPrefix !== null || this.pathExact !== null || this.pathRegex !== null
  }
}

/** Name for the access log: the configured name, else `rule-<index>`. */
export function ruleNameOf (rule: FirewallRuleConfig, index: number): string {
  return rule.name ?? `rule-${index}`
}

/**
 * Every problem with a firewall section, as `/firewall/...: message` lines
 * (the style of src/config/load.ts). Checks what JSON Schema cannot: regexes
 * compile, CIDRs parse, conditions that can never match, the rule count
 * against the shared hit-counter slots.
 */
export function firewallConfigErrors (config: FirewallConfig): string[] {
  const errors: string[] = []
  const total = config.rules.length + (config.builtin ? BUILTIN_RULES.length : 0)
  if (total > MAX_FIREWALL_RULES) {
    errors.push(`/firewall/rules: ${config.rules.length} rules${config.builtin ? ` plus ${BUILTIN_RULES.length} built-in` : ''} exceed the ${MAX_FIREWALL_RULES} hit counters in shared state`)
  }
  config.rules.forEach((rule, i) => {
    const at = `/firewall/rules/${i}`
    for (const [where, source] of [['path/regex', rule.path?.regex], ['header/regex', rule.header?.regex]] as const) {
      if (source === undefined) continue
      try { RegExp(source) } catch (err) { errors.push(`${at}/${where}: ${(err as Error).message}`) }
    }
    rule.clientCidr?.forEach((cidr, j) => {
      try { parseCidr(cidr) } catch (err) { errors.push(`${at}/clientCidr/${j}: ${(err as Error).message}`) }
    })
    if (rule.methods !== undefined && rule.methods.length === 0) {
      errors.push(`${at}/methods: an empty list matches no request; leave it out to match every method`)
    }
    for (const key of ['prefix', 'exact'] as const) {
      const value = rule.path?.[key]
      if (value === undefined) continue
      const problem = pathLiteralProblem(value)
      if (problem !== null) errors.push(`${at}/path/${key}: ${problem}`)
    }
    const header = rule.header
    if (header !== undefined && header.present === false && (header.equals !== undefined || header.regex !== undefined)) {
      errors.push(`${at}/header: present: false with equals/regex can never match`)
    }
  })
  return errors
}

/**
 * Paths are matched after decoding and normalising, so a literal that is
 * still encoded or not normalised could never match: say so at load time
 * instead of silently never firing.
 */
function pathLiteralProblem (value: string): string | null {
  if (value === '*') return null // asterisk-form, OPTIONS *
  if (!value.startsWith('/')) return 'must start with / (paths are matched without scheme and host)'
  if (/%[0-9A-Fa-f]{2}/.test(value)) return 'paths are matched decoded: write the characters, not %XX escapes'
  if (value.includes('\\') || /\/\/|\/\.\.?(?:\/|$)/.test(value)) return "paths are matched normalised: no '\\', '//', '/./' or '/../'"
  return null
}

/** Compile the configured rules, then the built-in ones. Throws ConfigError listing every problem. */
export function compileRules (config: FirewallConfig): CompiledRule[] {
  const errors = firewallConfigErrors(config)
  if (errors.length > 0) throw new ConfigError(errors, 'firewall configuration')
  const rules = config.rules.map((rule, i) => new CompiledRule(i, ruleNameOf(rule, i), rule.action, 0, rule))
  if (config.builtin) {
    for (const builtin of BUILTIN_RULES) {
      rules.push(new CompiledRule(rules.length, builtin.name, 'deny', builtin.kind, null))
    }
  }
  return rules
}
