/*
 * The access log's line builder in C: the same bytes as the JavaScript builder
 * in src/proxy/access-log.ts, which stays the fallback and the reference
 * (test/unit/access-line.test.ts compares the two on random records).
 * JavaScript writes a line a byte at a time (1.5-3 ns a byte, and 26 ns per
 * builtin copy of a key); here a line is one call.
 *
 * A call into C pays per argument it reads: a string is copied out of the
 * V8 heap, a Buffer's memory looked up (together about half of a call that
 * read seven strings and two Buffers). So what stays the same from line to
 * line is handed over once, not per line: the buffer lines go to (target),
 * and the names a line shows (upstream address, flag, route, pool), which
 * come from the config and are kept here by number (name). A line then reads
 * the request head, two strings (client address, request ID) and `nums`.
 *
 * accessLineSetup(prefix, bindings, nums) -> { line, target, name, maxNames }, or null:
 *   prefix    '{"level":"info","time":"'; bindings: '","pid":…,"type":"access",' (copied)
 *   nums      a Float64Array of N_COUNT the caller fills before each line, the N_*
 *             indices below (referenced by the functions: kept alive with them)
 * Each setup has its own state (no globals): every thread, and every copy of
 * the module, sets up its own.
 *
 * target(out) -> true: lines go to the Buffer `out` from now on (referenced
 *         until the next target: a sink's old buffer lives until then). false:
 *         not a Buffer or typed array; the target stays what it was (none at
 *         first: line declines).
 * name(id, text) -> true: the name `id` (0 to maxNames - 1) is text's latin1
 *         reading from now on; false: no such id, or text is MAX_TEXT units or more.
 * line(pos, limit, src, clientIp, requestId) -> the end of the line in `out`, or -1
 *         when it declines (no target, the line might reach `limit`, a string is
 *         over MAX_TEXT, a span is not inside `src`, a name is not set): the
 *         caller then builds the line in JavaScript.
 *
 *   pos, limit  the line goes at out[pos] and never reaches `limit` (what the
 *             caller reserved: in worker mode `out` is a ring whose unread lines
 *             lie past it)
 *   src       the request head's bytes (method, path, host, user agent, referer read from it)
 *   strings   written as their latin1 reading (low byte of each code unit), escaped
 *
 * JSON escaping as the JS builder does it: '"' and '\' as \" and \\, other
 * bytes below 0x20 and from 0x7f as \u00XX (lower-case hex). Numbers that are
 * not non-negative (none should be) read 0, as in the JS builder.
 */
#include <node_api.h>
#include <stdlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

enum {
  N_TIME_MS, N_PATH_START, N_PATH_END, N_STATUS, N_HAS_UPSTREAM, N_BYTES_OUT, N_BYTES_IN,
  N_DURATION_MS, N_UPSTREAM_MS, N_HOST_START, N_HOST_END, N_UA_START, N_UA_END,
  N_REFERER_START, N_REFERER_END, N_VERSION_MINOR, N_RETRIES, N_PROTO,
  N_METHOD_START, N_METHOD_END, N_ADDRESS, N_FLAG, N_ROUTE, N_POOL, N_COUNT
};

/* Longest string or name copied (client, request ID, address, flag, route, pool): shorter than this. */
#define MAX_TEXT 1024
/* Names kept (name()): the config's upstream addresses, route and pool names, and the catalogue's flags. */
#define MAX_NAMES 4096
/* Room a line needs besides the prefix, the bindings and its variable bytes (src/proxy/access-log.ts reserves more). */
#define FIXED_BYTES 640

static const char HEX[] = "0123456789abcdef";

#define MAX_AFFIX 512

/* A name: its latin1 bytes (NULL: not set). */
typedef struct {
  uint8_t *bytes;
  size_t len;
} line_name;

/* One setup's state (accessLineSetup), shared by its three functions. */
typedef struct {
  uint8_t prefix[MAX_AFFIX];
  size_t prefix_len;
  uint8_t bindings[MAX_AFFIX];
  size_t bindings_len;
  const double *nums;
  napi_ref nums_ref;
  /* where lines go (target): the Buffer's memory, and a reference keeping it */
  uint8_t *out;
  size_t out_len;
  napi_ref out_ref;
  line_name names[MAX_NAMES];
  /* the ISO time of `cached_ms`, formatted once per millisecond */
  double cached_ms;
  char cached_time[24];
  /* functions still alive: the state is freed with the last one */
  int functions;
} line_setup;

static int needs_escape(uint8_t b) {
  return b < 0x20 || b == 0x22 || b == 0x5c || b >= 0x7f;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Whether a byte of the word needs escaping (SWAR: a byte below 0x20, '"', '\\', 0x7f, or 0x80 and
   above). A byte after one that does may read as needing it too: the caller then looks byte by byte. */
static int word_needs_escape(uint64_t x) {
  uint64_t below = (x - ONES * 0x20) & ~x; /* a byte below 0x20 (bytes from 0x80 are caught by x itself) */
  uint64_t quote = x ^ (ONES * 0x22);
  uint64_t backslash = x ^ (ONES * 0x5c);
  uint64_t del = x ^ (ONES * 0x7f);
  quote = (quote - ONES) & ~quote; /* a zero byte: one equal to the constant */
  backslash = (backslash - ONES) & ~backslash;
  del = (del - ONES) & ~del;
  return ((below | quote | backslash | del | x) & HIGHS) != 0;
}

/* Room left is checked by the caller against the worst case (6 bytes per source byte). Sixteen bytes
   at a time (SSE2) or eight while none needs escaping. */
static size_t put_escaped(uint8_t *out, size_t o, const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
#if defined(__SSE2__)
    if (i + 16 <= n) {
      __m128i x = _mm_loadu_si128((const __m128i *)(s + i));
      /* signed: bytes from 0x80 are below 0x20 too */
      __m128i escaped = _mm_or_si128(
        _mm_or_si128(_mm_cmplt_epi8(x, _mm_set1_epi8(0x20)), _mm_cmpeq_epi8(x, _mm_set1_epi8(0x22))),
        _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8(0x5c)), _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7f))));
      unsigned mask = (unsigned)_mm_movemask_epi8(escaped);
      if (mask == 0) {
        _mm_storeu_si128((__m128i *)(out + o), x);
        o += 16;
        i += 16;
        continue;
      }
      unsigned clean = (unsigned)__builtin_ctz(mask); /* bytes before the first to escape */
      memcpy(out + o, s + i, clean);
      o += clean;
      i += clean;
    } else
#endif
    if (i + 8 <= n) {
      uint64_t word;
      memcpy(&word, s + i, 8);
      if (!word_needs_escape(word)) {
        memcpy(out + o, &word, 8);
        o += 8;
        i += 8;
        continue;
      }
    }
    uint8_t b = s[i++];
    if (!needs_escape(b)) { out[o++] = b; continue; }
    out[o++] = '\\';
    if (b == 0x22 || b == 0x5c) { out[o++] = b; continue; }
    out[o++] = 'u'; out[o++] = '0'; out[o++] = '0';
    out[o++] = (uint8_t)HEX[b >> 4]; out[o++] = (uint8_t)HEX[b & 15];
  }
  return o;
}

/* Whether a number known to be in [0, 2^53) is whole (no call to floor: a cast truncates). */
static int whole(double x) {
  return (double)(uint64_t)x == x;
}

static size_t put_raw(uint8_t *out, size_t o, const char *text) {
  size_t n = strlen(text);
  memcpy(out + o, text, n);
  return o + n;
}

/* `key` (ending in the opening quote), the escaped text, the closing quote. */
static size_t put_text_field(uint8_t *out, size_t o, const char *key, const char *text, int len) {
  o = put_raw(out, o, key);
  o = put_escaped(out, o, (const uint8_t *)text, (size_t)len);
  out[o++] = '"';
  return o;
}

static const char TWO_DIGITS[] =
  "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
  "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
  "8081828384858687888990919293949596979899";

/* A non-negative integer's digits (as the JS putInt: the value is an integer here), two at a time. */
static size_t put_int(uint8_t *out, size_t o, double value) {
  char digits[24];
  int n = 24;
  /* up to 2^53, as the JS putInt (past it a double's digits are not what halving by 10 gives) */
  uint64_t v = !(value > 0) ? 0 : value >= 9007199254740992.0 ? 9007199254740992ULL : (uint64_t)value;
  while (v >= 100) {
    unsigned pair = (unsigned)(v % 100);
    v /= 100;
    n -= 2;
    memcpy(digits + n, TWO_DIGITS + 2 * pair, 2);
  }
  if (v >= 10) {
    n -= 2;
    memcpy(digits + n, TWO_DIGITS + 2 * v, 2);
  } else {
    digits[--n] = (char)('0' + v);
  }
  memcpy(out + o, digits + n, (size_t)(24 - n));
  return o + (size_t)(24 - n);
}

/* Math.round: the nearer integer, halves toward +infinity. */
static double js_round(double x) {
  /* x >= 0 here; from 2^53 every double is whole */
  double r = x < 9007199254740992.0 ? (double)(uint64_t)x : x;
  return x - r >= 0.5 ? r + 1 : r;
}

/* Milliseconds with three decimals, as the JS putMillis. */
static size_t put_millis(uint8_t *out, size_t o, double ms) {
  double us = js_round((ms > 0 ? ms : 0) * 1000);
  /* an integer below 2^53 (durations of centuries): the same digits as the JS's double arithmetic */
  uint64_t u = us < 9007199254740992.0 ? (uint64_t)us : 9007199254740992ULL;
  o = put_int(out, o, (double)(u / 1000));
  int f = (int)(u % 1000);
  out[o++] = '.';
  out[o++] = (uint8_t)('0' + f / 100);
  out[o++] = (uint8_t)('0' + f / 10 % 10);
  out[o++] = (uint8_t)('0' + f % 10);
  return o;
}

/* The ISO time of `ms` (24 bytes), formatted once per millisecond; (size_t)-1 outside years 0-9999. */
static size_t put_time(line_setup *setup, uint8_t *out, size_t o, double ms) {
  if (ms != setup->cached_ms) {
    if (!(ms >= 0 && ms < 253402300800000.0)) return (size_t)-1;
    time_t seconds = (time_t)floor(ms / 1000);
    int millis = (int)(ms - (double)seconds * 1000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    /* Date#toISOString: YYYY-MM-DDTHH:mm:ss.sssZ */
    char text[64];
    int n = snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
    if (n != 24) return (size_t)-1;
    memcpy(setup->cached_time, text, 24);
    setup->cached_ms = ms;
  }
  memcpy(out + o, setup->cached_time, 24);
  return o + 24;
}

/* A string argument's latin1 bytes into `tmp` (MAX_TEXT at most): its length, or -1. */
static int text_of(napi_env env, napi_value value, char *tmp) {
  size_t n = 0;
  if (napi_get_value_string_latin1(env, value, tmp, MAX_TEXT + 1, &n) != napi_ok || n >= MAX_TEXT) return -1;
  return (int)n;
}

/* A span of src: 0 absent (start is -1), 1 whole offsets inside src, -1 anything else (NaN fails every test). */
static int span_state(double start, double end, size_t src_len) {
  if (start == -1) return 0;
  return start >= 0 && end >= start && end <= (double)src_len && whole(start) && whole(end) ? 1 : -1;
}

/* src[start, end) inside quotes, or null when absent (the span was checked by span_state). */
static size_t put_span(uint8_t *out, size_t o, const uint8_t *src, double start, double end) {
  if (start == -1) return put_raw(out, o, "null");
  out[o++] = '"';
  o = put_escaped(out, o, src + (size_t)start, (size_t)(end - start));
  out[o++] = '"';
  return o;
}

static napi_value result_of(napi_env env, double value) {
  napi_value result;
  napi_create_double(env, value, &result);
  return result;
}

/* Name `id` of nums (a whole number below MAX_NAMES, and set), or NULL. */
static const line_name *name_at(const line_setup *setup, double id) {
  if (!(id >= 0 && id < MAX_NAMES) || !whole(id)) return NULL;
  const line_name *name = &setup->names[(int)id];
  return name->bytes != NULL ? name : NULL;
}

static size_t put_name_field(uint8_t *out, size_t o, const char *key, const line_name *name) {
  o = put_raw(out, o, key);
  o = put_escaped(out, o, name->bytes, name->len);
  out[o++] = '"';
  return o;
}

static void release_setup(napi_env env, void *data, void *hint) {
  (void)hint;
  line_setup *setup = (line_setup *)data;
  if (--setup->functions > 0) return;
  napi_delete_reference(env, setup->nums_ref);
  if (setup->out_ref != NULL) napi_delete_reference(env, setup->out_ref);
  for (int i = 0; i < MAX_NAMES; i++) free(setup->names[i].bytes);
  free(setup);
}

static napi_value boolean_of(napi_env env, int value) {
  napi_value result;
  napi_get_boolean(env, value != 0, &result);
  return result;
}

/* target(out): lines go to `out` from now on; false (and the target unchanged) when it is not a Buffer. */
static napi_value swy_access_line_target(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  uint8_t *out;
  size_t out_len;
  napi_ref ref;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, &data) != napi_ok || argc < 1 || data == NULL ||
      napi_get_buffer_info(env, argv[0], (void **)&out, &out_len) != napi_ok ||
      napi_create_reference(env, argv[0], 1, &ref) != napi_ok) return boolean_of(env, 0);
  line_setup *setup = (line_setup *)data;
  if (setup->out_ref != NULL) napi_delete_reference(env, setup->out_ref);
  setup->out_ref = ref;
  setup->out = out;
  setup->out_len = out_len;
  return boolean_of(env, 1);
}

/* name(id, text): name `id` is text's latin1 reading from now on. */
static napi_value swy_access_line_name(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  void *data = NULL;
  int32_t id;
  char text[MAX_TEXT + 1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, &data) != napi_ok || argc < 2 || data == NULL ||
      napi_get_value_int32(env, argv[0], &id) != napi_ok || id < 0 || id >= MAX_NAMES) return boolean_of(env, 0);
  int len = text_of(env, argv[1], text);
  if (len < 0) return boolean_of(env, 0);
  line_name *name = &((line_setup *)data)->names[id];
  uint8_t *bytes = (uint8_t *)malloc(len > 0 ? (size_t)len : 1);
  if (bytes == NULL) return boolean_of(env, 0);
  memcpy(bytes, text, (size_t)len);
  free(name->bytes);
  name->bytes = bytes;
  name->len = (size_t)len;
  return boolean_of(env, 1);
}

static napi_value swy_access_line(napi_env env, napi_callback_info info);

/* A function of `setup` (it holds one count of the setup's life), set as `key` of `object`. */
static int add_function(napi_env env, napi_value object, const char *key, napi_callback cb, line_setup *setup) {
  napi_value fn;
  if (napi_create_function(env, key, NAPI_AUTO_LENGTH, cb, setup, &fn) != napi_ok) return 0;
  setup->functions++;
  if (napi_add_finalizer(env, fn, setup, release_setup, NULL, NULL) != napi_ok) { setup->functions--; return 0; }
  return napi_set_named_property(env, object, key, fn) == napi_ok;
}

napi_value swy_access_line_setup(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint8_t *prefix, *bindings;
  size_t prefix_len, bindings_len, count;
  napi_typedarray_type type;
  void *nums_data;
  napi_value result;
  napi_get_null(env, &result);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_buffer_info(env, argv[0], (void **)&prefix, &prefix_len) != napi_ok || prefix_len > MAX_AFFIX ||
      napi_get_buffer_info(env, argv[1], (void **)&bindings, &bindings_len) != napi_ok || bindings_len > MAX_AFFIX ||
      napi_get_typedarray_info(env, argv[2], &type, &count, &nums_data, NULL, NULL) != napi_ok ||
      type != napi_float64_array || count < N_COUNT) return result;
  line_setup *setup = (line_setup *)calloc(1, sizeof *setup);
  if (setup == NULL) return result;
  memcpy(setup->prefix, prefix, prefix_len);
  setup->prefix_len = prefix_len;
  memcpy(setup->bindings, bindings, bindings_len);
  setup->bindings_len = bindings_len;
  setup->nums = (const double *)nums_data;
  setup->cached_ms = -1;
  if (napi_create_reference(env, argv[2], 1, &setup->nums_ref) != napi_ok) { free(setup); return result; }
  /* the state lives while any function does: a count for the setup call itself until the end */
  setup->functions = 1;
  napi_value object, max_names;
  int ok = napi_create_object(env, &object) == napi_ok &&
    add_function(env, object, "line", swy_access_line, setup) &&
    add_function(env, object, "target", swy_access_line_target, setup) &&
    add_function(env, object, "name", swy_access_line_name, setup) &&
    napi_create_int32(env, MAX_NAMES, &max_names) == napi_ok &&
    napi_set_named_property(env, object, "maxNames", max_names) == napi_ok;
  release_setup(env, setup, NULL); /* the setup call's count: freed here if no function was made */
  return ok ? object : result;
}

static napi_value swy_access_line(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, &data) != napi_ok || argc < 5 || data == NULL) return result_of(env, -1);
  line_setup *setup = (line_setup *)data;
  const double *nums = setup->nums;
  uint8_t *out = setup->out, *src;
  size_t src_len;
  int32_t pos, limit;
  if (out == NULL ||
      napi_get_value_int32(env, argv[0], &pos) != napi_ok || pos < 0 ||
      napi_get_value_int32(env, argv[1], &limit) != napi_ok || limit < pos || (size_t)limit > setup->out_len ||
      napi_get_buffer_info(env, argv[2], (void **)&src, &src_len) != napi_ok) return result_of(env, -1);
  char client[MAX_TEXT + 1], request_id[MAX_TEXT + 1];
  int client_len = text_of(env, argv[3], client);
  int request_id_len = client_len < 0 ? -1 : text_of(env, argv[4], request_id);
  if (request_id_len < 0) return result_of(env, -1);
  /* every name set (the address only with an upstream; a route and a pool are -1 when absent) */
  const line_name *address = nums[N_HAS_UPSTREAM] != 0 ? name_at(setup, nums[N_ADDRESS]) : NULL;
  const line_name *flag = name_at(setup, nums[N_FLAG]);
  const line_name *route = nums[N_ROUTE] == -1 ? NULL : name_at(setup, nums[N_ROUTE]);
  const line_name *pool = nums[N_POOL] == -1 ? NULL : name_at(setup, nums[N_POOL]);
  if ((nums[N_HAS_UPSTREAM] != 0 && address == NULL) || flag == NULL ||
      (nums[N_ROUTE] != -1 && route == NULL) || (nums[N_POOL] != -1 && pool == NULL)) return result_of(env, -1);
  size_t variable = (size_t)client_len + (size_t)request_id_len + flag->len +
    (address != NULL ? address->len : 0) + (route != NULL ? route->len : 0) + (pool != NULL ? pool->len : 0);
  /* every span absent or inside src; the worst case: fixed text (keys about 230 bytes, time 24,
     seven numbers of at most 24), and every variable byte escaped (6 bytes) */
  const int span_starts[] = { N_METHOD_START, N_PATH_START, N_HOST_START, N_UA_START, N_REFERER_START };
  double spans = 0;
  for (int i = 0; i < 5; i++) {
    double a = nums[span_starts[i]], b = nums[span_starts[i] + 1];
    int state = span_state(a, b, src_len);
    if (state < 0) return result_of(env, -1);
    if (state > 0) spans += b - a;
  }
  double need = (double)FIXED_BYTES + setup->prefix_len + setup->bindings_len + 6.0 * ((double)variable + spans);
  if ((double)pos + need > (double)limit) return result_of(env, -1);

  size_t o = (size_t)pos;
  memcpy(out + o, setup->prefix, setup->prefix_len); o += setup->prefix_len;
  o = put_time(setup, out, o, nums[N_TIME_MS]);
  if (o == (size_t)-1) return result_of(env, -1);
  memcpy(out + o, setup->bindings, setup->bindings_len); o += setup->bindings_len;
  o = put_raw(out, o, "\"client\":\"");
  o = put_escaped(out, o, (const uint8_t *)client, (size_t)client_len);
  o = put_raw(out, o, "\",\"method\":\"");
  if (nums[N_METHOD_START] != -1) o = put_escaped(out, o, src + (size_t)nums[N_METHOD_START], (size_t)(nums[N_METHOD_END] - nums[N_METHOD_START]));
  o = put_raw(out, o, "\",\"path\":\"");
  if (nums[N_PATH_START] != -1) o = put_escaped(out, o, src + (size_t)nums[N_PATH_START], (size_t)(nums[N_PATH_END] - nums[N_PATH_START]));
  o = put_raw(out, o, "\",\"status\":");
  o = put_int(out, o, nums[N_STATUS]);
  o = address != NULL ? put_name_field(out, o, ",\"upstream\":\"", address) : put_raw(out, o, ",\"upstream\":null");
  o = put_raw(out, o, ",\"bytes\":");
  o = put_int(out, o, nums[N_BYTES_OUT]);
  o = put_raw(out, o, ",\"bytesIn\":");
  o = put_int(out, o, nums[N_BYTES_IN]);
  o = put_raw(out, o, ",\"durationMs\":");
  o = put_millis(out, o, nums[N_DURATION_MS]);
  o = put_raw(out, o, ",\"upstreamMs\":");
  o = nums[N_UPSTREAM_MS] >= 0 ? put_millis(out, o, nums[N_UPSTREAM_MS]) : put_raw(out, o, "null");
  o = put_name_field(out, o, ",\"flag\":\"", flag);
  o = put_raw(out, o, ",\"host\":");
  o = put_span(out, o, src, nums[N_HOST_START], nums[N_HOST_END]);
  o = put_raw(out, o, ",\"userAgent\":");
  o = put_span(out, o, src, nums[N_UA_START], nums[N_UA_END]);
  o = put_raw(out, o, ",\"referer\":");
  o = put_span(out, o, src, nums[N_REFERER_START], nums[N_REFERER_END]);
  if (nums[N_VERSION_MINOR] != -1) {
    o = put_raw(out, o, ",\"httpVersion\":\"1.");
    o = put_int(out, o, nums[N_VERSION_MINOR]);
    out[o++] = '"';
  } else {
    o = put_raw(out, o, ",\"httpVersion\":null");
  }
  if (request_id_len > 0) o = put_text_field(out, o, ",\"requestId\":\"", request_id, request_id_len);
  if (nums[N_RETRIES] != -1) {
    o = put_raw(out, o, ",\"retries\":");
    o = put_int(out, o, nums[N_RETRIES]);
  }
  if (route != NULL && route->len > 0) o = put_name_field(out, o, ",\"route\":\"", route);
  if (pool != NULL && pool->len > 0) o = put_name_field(out, o, ",\"pool\":\"", pool);
  if (nums[N_PROTO] != -1) o = put_raw(out, o, nums[N_PROTO] > 0 ? ",\"tls\":true" : ",\"tls\":false");
  out[o++] = '}';
  out[o++] = '\n';
  return result_of(env, (double)o);
}
