// Lint config. neostandard is the flat-config successor of `standard` (undici and
// fastify use it) and the code is already in standard style: no semicolons,
// 2 spaces, a space before function parens, single quotes.
//
// Syntax-only on purpose: no rule needs type information. `tsc --strict` with
// noUnusedLocals/noUnusedParameters/noFallthroughCasesInSwitch already checks
// types, and a type-aware run (parserOptions.projectService, for
// @typescript-eslint/no-floating-promises) took 24 s on src + workers alone and
// 41 s on the whole tree on a 2-core machine, against ~11 s for this config.
// It found no floating promise in src or workers: un-awaited promises are
// written `void p` (allowed below as a statement).
import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    noJsx: true,
    ignores: ['dist/**', 'build/**', 'node_modules/**', 'bench/results/**', 'test/artifacts/**']
  }),
  {
    name: 'switchyard/rules',
    rules: {
      // neostandard turns this off for TypeScript because tsc reports unreachable
      // code, but tsc only *suggests* (allowUnreachableCode defaults to a hint).
      'no-unreachable': 'error',
      // Driver loops are `for (;;)` (STYLE.md); any other constant condition is a slip.
      'no-constant-condition': ['error', { checkLoops: 'allExceptWhileTrue' }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-var': 'error',
      'prefer-const': ['error', { destructuring: 'all' }],
      // `void promise` marks a promise that is deliberately not awaited.
      'no-void': ['error', { allowAsStatement: true }],
      // The byte scanners use `continue outer` over a candidate list (a label on a
      // loop is the cheap way out of an inner compare loop); labels elsewhere stay banned.
      'no-labels': ['error', { allowLoop: true }],
      // Reports `while (!stop) { await ... }` where another task sets the flag:
      // the rule cannot see writes from other closures, so in async code it is noise.
      'no-unmodified-loop-condition': 'off'
    }
  }
]
