/**
 * The built-in rule set (`firewall.builtin: true`): four named rules evaluated
 * after the configured ones, each with its own index and hit counter.
 *
 *   builtin:path-traversal    a '..' path segment; '../' or '..\' in the query
 *   builtin:nul-byte          a NUL byte in the path or the query
 *   builtin:sql-injection     SQL-injection signatures in the query string
 *   builtin:script-injection  script-injection signatures in the path or the query
 *
 * Everything is inspected after decoding, so an encoding trick is no way round
 * a rule: percent-decoding is repeated (up to MAX_DECODE_ROUNDS rounds, so
 * %252e%252e%252f is '../'), overlong UTF-8 forms of ASCII are folded (%c0%ae
 * is '.'), '\' separates path segments like '/' (as Windows backends and the
 * WHATWG URL parser read it), and '+' counts as a space in the query (as
 * application/x-www-form-urlencoded backends read it). Letters match in any
 * case. Headers and bodies are not inspected.
 *
 * False-positive policy
 * ---------------------
 * These rules stop scanners and copy-pasted payloads; they are not a WAF with a
 * SQL or HTML parser. Every signature needs the shape of an attack, never one
 * word or one character: a quote that closes a string AND an operator after it,
 * a keyword AND the syntax that makes it code. Deliberately NOT blocked:
 *
 *   - a lone apostrophe or quote: ?name=O'Brien, ?q=rock+'n'+roll, ?q="exact+phrase"
 *   - SQL words alone or in prose: ?q=select, ?q=union+jobs, ?q=drop+shipping,
 *     ?q=how+to+delete+from+a+list, ?q=sleep+apnea, ?sort=update, ?q=cats+or+dogs
 *   - SQL words inside other words: ?q=reunion+selection, ?q=benchmark(s)
 *   - '--' that is not a comment closing a quoted string: /posts/my--slug,
 *     ?slug=a--b, ?q="--verbose", ?range=2020--2021
 *   - '..' that is not a whole path segment: /files/a..b.txt, /v1..2/x, ?q=wait...
 *   - dot-files and '.well-known' (only segments that are exactly '.' or '..' count)
 *   - '<' and '>' on their own: ?q=a<b, ?filter=price>10, ?q=List<Object>
 *   - a parameter named like an event handler: ?onload=init, ?online=1 (a handler
 *     counts only after a space, quote, ';' or '<tag/', i.e. inside a tag)
 *   - 'javascript:' followed by prose: ?q=JavaScript:+The+Good+Parts
 *   - percent-encoded spaces, unicode and emoji, dates (2024-01-31), times
 *     (12:30), e-mail addresses, URLs and JSON-ish values in the query
 *
 * Blocked although sometimes legitimate (the price of each rule):
 *   - a search for the literal phrase "union select", or "sleep(5)" / "pg_sleep("
 *   - relative paths in query values: ?next=../account, ?file=..\x
 *   - a quote, then or/and, then a comparison: ?q='a'+or+b=c
 *   - "<script", "<iframe" or "javascript:" followed by code-like text, and an
 *     event handler with '=' after a space or quote: ?q=what+is+onload%3D
 *   - any '..' path segment, even one that stays inside the root: browsers remove
 *     dot segments before sending (WHATWG URL), so only tools and attackers send them
 * For a route that needs one of these, put an `allow` rule before it (an allow
 * stops evaluation, so it also skips the built-in set).
 */

export const BUILTIN_TRAVERSAL = 1
export const BUILTIN_NUL = 2
export const BUILTIN_SQL_INJECTION = 3
export const BUILTIN_SCRIPT_INJECTION = 4

/** In evaluation order; their rule indexes follow the configured rules'. */
export const BUILTIN_RULES: ReadonlyArray<{ readonly name: string, readonly kind: number }> = [
  { name: 'builtin:path-traversal', kind: BUILTIN_TRAVERSAL },
  { name: 'builtin:nul-byte', kind: BUILTIN_NUL },
  { name: 'builtin:sql-injection', kind: BUILTIN_SQL_INJECTION },
  { name: 'builtin:script-injection', kind: BUILTIN_SCRIPT_INJECTION },
]

/**
 * Bytes that no ordinary query or path needs and at least one signature does.
 * The scanners in ./target skip the regexes for a raw (undecoded) path or
 * query made only of the other bytes and without '..': every signature below
 * needs one of these (a quote, whitespace or '+', '(', ';', '<', ':', '*' of a
 * comment, NUL) or '..', so skipping cannot change an answer. A test checks
 * this on random strings; keep it true when adding a signature.
 */
export const SIGNATURE_BYTE = (() => {
  const table = new Uint8Array(256).fill(1)
  const plain = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&=,/@?%'
  for (let i = 0; i < plain.length; i++) table[plain.charCodeAt(i)] = 0
  return table
})()

// ---- signatures ---------------------------------------------------------------
// Each regex is global ('g') only so that a search can start at lastIndex
// inside the raw target without slicing it; test() on a global regex resets
// lastIndex to 0 after a miss, and matchFrom() always sets it first.
// Quantifiers on free text are bounded ({0,64}) so a hostile 8 KB target costs
// linear time, not quadratic.

/** Whitespace as SQL sees it: spaces, '+' (form encoding), C comments, MySQL's /*! version comments. */
// A comment cannot contain '*/', so a run of comments splits into tokens one way only.
const S = String.raw`(?:[\s+]|/\*(?:[^*]|\*(?!/)){0,64}\*/|/\*!\d{0,5}|\*/)`

const SQL_SIGNATURES = [
  // tautology after a closing quote: ' or 1=1, 'or'a'='a, ') or ('1'='1, " or ""=", ' || '1'='1, ' or 1--
  String.raw`['"]\)*${S}*(?:(?:or|and|xor)\b|\|\||&&)(?:${S}|\()*['"]?[\w.-]{0,40}['"]?(?:${S}|\))*(?:[=<>]|!=|--|#)`,
  // a comment straight after a closing quote: admin'--, admin' #
  String.raw`['"]\)*${S}*(?:--|#)(?:[\s+&;]|$)`,
  // numeric or quoted tautology without a leading quote: 1 or 1=1, 1 and 'a'='a'
  String.raw`\b(?:or|and)${S}+(?<tq>['"]?)(?<tv>\w{1,20})\k<tq>${S}*=${S}*\k<tq>\k<tv>\k<tq>(?!\w)`,
  // union select, union all select, union(select, 0union/**/select
  String.raw`(?<![a-z])union(?:${S}+(?:all|distinct)\b)?(?:${S}|\()+select\b`,
  // stacked statements: ; drop table, ;delete from, ; exec xp_cmdshell
  String.raw`;${S}*(?:(?:drop|truncate|alter|create)${S}+(?:table|database|schema|user|view|index|procedure|function)\b|delete${S}+from\b|insert${S}+into\b|shutdown\b|exec(?:ute)?${S}+(?:xp|sp)_)`,
  // time-based and file probes: sleep(5), benchmark(1e6,...), pg_sleep(, waitfor delay '0:0:5'
  String.raw`(?<![a-z_])(?:sleep|benchmark)\(\s*\d|\bpg_sleep${S}*\(|\bwaitfor${S}+delay${S}+['"]|(?<![a-z_])(?:load_file|extractvalue|updatexml)${S}*\(|\binto${S}+(?:out|dump)file\b`,
]

/** j/a/v/a/s/c/r/i/p/t with the tabs and newlines browsers strip from URLs allowed between letters. */
function loose (word: string): string {
  return word.split('').join('[\\t\\n\\r]*')
}

const SCRIPT_SIGNATURES = [
  String.raw`<(?:script|iframe)\b`,
  // a scheme followed by code: a non-space straight away, or a '(', '`' or '=' before the next parameter
  `(?:${loose('javascript')}|${loose('vbscript')}):(?:[^\\s&+]|[^&]{0,64}?[(\`=])`,
  // an event handler inside a tag (not a parameter named onload: that follows '?' or '&')
  String.raw`(?:[\s"'+;\x60]|<[a-z][a-z0-9-]*/)on(?:error|load|mouseover|mouseenter|focus|blur|click|toggle|pageshow|animationstart|begin)[\s+]*=`,
]

/** '../' or '..\' at the start of a query value or after a separator; '\.{2,}' also catches '....//'. */
const QUERY_TRAVERSAL_SIGNATURE = String.raw`(?:^|[?=&/\\:,;|"'\s+(])\.{2,}[/\\]`

export const SQL_INJECTION = new RegExp(SQL_SIGNATURES.join('|'), 'gi')
export const SCRIPT_INJECTION = new RegExp(SCRIPT_SIGNATURES.join('|'), 'gi')
export const QUERY_TRAVERSAL = new RegExp(QUERY_TRAVERSAL_SIGNATURE, 'g')

/** Does `pattern` (global) match `source` at or after `from`? Does not allocate. */
export function matchFrom (pattern: RegExp, source: string, from: number): boolean {
  pattern.lastIndex = from
  const found = pattern.test(source)
  pattern.lastIndex = 0
  return found
}
