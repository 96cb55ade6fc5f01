/*
 * The access log's line builder in C: the same bytes as the JavaScript builder
 * in src/proxy/access-log.ts, which stays the fallback and the reference
 * (test/unit/access-line.test.ts compares the two on random records).
 * JavaScript writes a line a byte at a time (1.5-3 ns a byte, and 26 ns per
 * builtin copy of a key); here a line is one call.
 *
 * accessLineSetup(prefix, bindings, nums) -> a builder function, or null:
 *   prefix    '{"level":"info","time":"'; bindings: '","pid":…,"type":"access",' (copied)
 *   nums      a Float64Array of N_COUNT the caller fills before each line, the N_*
 *             indices below (referenced by the builder: kept alive with it)
 * Each builder has its own state (no globals): every thread, and every copy of
 * the module, sets up its own.
 *
 * builder(out, pos, limit, src, clientIp, method, address, requestId, flag,
 *         route, pool) -> the end of the line in `out`, or -1 when it declines
 *         (the line might not pass `limit`, a string is over MAX_TEXT, a span is
 *         not inside `src`): the caller then builds the line in JavaScript.
 *
 *   out       the log buffer; the line goes at `pos`, and never reaches `limit`
 *             (what the caller reserved: in worker mode the buffer is a ring
 *             whose unread lines lie past it)
 *   src       the request head's bytes (path, host, user agent, referer read from it)
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

enum {
  N_TIME_MS, N_PATH_START, N_PATH_END, N_STATUS, N_HAS_UPSTREAM, N_BYTES_OUT, N_BYTES_IN,
  N_DURATION_MS, N_UPSTREAM_MS, N_HOST_START, N_HOST_END, N_UA_START, N_UA_END,
  N_REFERER_START, N_REFERER_END, N_VERSION_MINOR, N_RETRIES, N_PROTO, N_COUNT
};

/* Longest string argument copied (client, method, address, request ID, flag, route, pool). */
#define MAX_TEXT 1024
/* Room a line needs besides the prefix, the bindings and its variable bytes (src/proxy/access-log.ts reserves more). */
#define FIXED_BYTES 640

static const char HEX[] = "0123456789abcdef";

#define MAX_AFFIX 512

/* One builder's state (accessLineSetup). */
typedef struct {
  uint8_t prefix[MAX_AFFIX];
  size_t prefix_len;
  uint8_t bindings[MAX_AFFIX];
  size_t bindings_len;
  const double *nums;
  napi_ref nums_ref;
  /* the ISO time of `cached_ms`, formatted once per millisecond */
  double cached_ms;
  char cached_time[24];
} line_setup;

static int needs_escape(uint8_t b) {
  return b < 0x20 || b == 0x22 || b == 0x5c || b >= 0x7f;
}

/* Room left is checked by the caller against the worst case (6 bytes per source byte). */
static size_t put_escaped(uint8_t *out, size_t o, const uint8_t *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint8_t b = s[i];
    if (!needs_escape(b)) {
      size_t run = i + 1;
      while (run < n && !needs_escape(s[run])) run++;
      memcpy(out + o, s + i, run - i);
      o += run - i;
      i = run - 1;
      continue;
    }
    out[o++] = '\\';
    if (b == 0x22 || b == 0x5c) { out[o++] = b; continue; }
    out[o++] = 'u'; out[o++] = '0'; out[o++] = '0';
    out[o++] = (uint8_t)HEX[b >> 4]; out[o++] = (uint8_t)HEX[b & 15];
  }
  return o;
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

/* A non-negative integer's digits (as the JS putInt: the value is an integer here). */
static size_t put_int(uint8_t *out, size_t o, double value) {
  char digits[24];
  int n = 0;
  uint64_t v = !(value > 0) ? 0 : value >= 18446744073709549568.0 ? UINT64_MAX : (uint64_t)value;
  do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v > 0);
  while (n > 0) out[o++] = (uint8_t)digits[--n];
  return o;
}

/* Math.round: the nearer integer, halves toward +infinity. */
static double js_round(double x) {
  double r = floor(x);
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
  return start >= 0 && end >= start && end <= (double)src_len && start == floor(start) && end == floor(end) ? 1 : -1;
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

static napi_value swy_access_line(napi_env env, napi_callback_info info);

static void finalize_setup(napi_env env, void *data, void *hint) {
  (void)hint;
  line_setup *setup = (line_setup *)data;
  napi_delete_reference(env, setup->nums_ref);
  free(setup);
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
  napi_value fn;
  if (napi_create_reference(env, argv[2], 1, &setup->nums_ref) != napi_ok) { free(setup); return result; }
  if (napi_create_function(env, "accessLine", NAPI_AUTO_LENGTH, swy_access_line, setup, &fn) != napi_ok ||
      napi_add_finalizer(env, fn, setup, finalize_setup, NULL, NULL) != napi_ok) {
    napi_delete_reference(env, setup->nums_ref);
    free(setup);
    return result;
  }
  return fn;
}

static napi_value swy_access_line(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, &data) != napi_ok || argc < 11 || data == NULL) return result_of(env, -1);
  line_setup *setup = (line_setup *)data;
  const double *nums = setup->nums;
  uint8_t *out, *src;
  size_t out_len, src_len;
  int32_t pos, limit;
  if (napi_get_buffer_info(env, argv[0], (void **)&out, &out_len) != napi_ok ||
      napi_get_value_int32(env, argv[1], &pos) != napi_ok || pos < 0 ||
      napi_get_value_int32(env, argv[2], &limit) != napi_ok || limit < pos || (size_t)limit > out_len ||
      napi_get_buffer_info(env, argv[3], (void **)&src, &src_len) != napi_ok) return result_of(env, -1);
  char texts[7][MAX_TEXT + 1];
  int lens[7];
  size_t variable = 0;
  for (int i = 0; i < 7; i++) {
    lens[i] = text_of(env, argv[4 + i], texts[i]);
    if (lens[i] < 0) return result_of(env, -1);
    variable += (size_t)lens[i];
  }
  /* every span absent or inside src; the worst case: fixed text (keys about 230 bytes, time 24,
     seven numbers of at most 24), and every variable byte escaped (6 bytes) */
  const int span_starts[] = { N_PATH_START, N_HOST_START, N_UA_START, N_REFERER_START };
  double spans = 0;
  for (int i = 0; i < 4; i++) {
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
  o = put_escaped(out, o, (const uint8_t *)texts[0], (size_t)lens[0]);
  o = put_raw(out, o, "\",\"method\":\"");
  o = put_escaped(out, o, (const uint8_t *)texts[1], (size_t)lens[1]);
  o = put_raw(out, o, "\",\"path\":\"");
  if (nums[N_PATH_START] != -1) o = put_escaped(out, o, src + (size_t)nums[N_PATH_START], (size_t)(nums[N_PATH_END] - nums[N_PATH_START]));
  o = put_raw(out, o, "\",\"status\":");
  o = put_int(out, o, nums[N_STATUS]);
  o = nums[N_HAS_UPSTREAM] != 0 ? put_text_field(out, o, ",\"upstream\":\"", texts[2], lens[2]) : put_raw(out, o, ",\"upstream\":null");
  o = put_raw(out, o, ",\"bytes\":");
  o = put_int(out, o, nums[N_BYTES_OUT]);
  o = put_raw(out, o, ",\"bytesIn\":");
  o = put_int(out, o, nums[N_BYTES_IN]);
  o = put_raw(out, o, ",\"durationMs\":");
  o = put_millis(out, o, nums[N_DURATION_MS]);
  o = put_raw(out, o, ",\"upstreamMs\":");
  o = nums[N_UPSTREAM_MS] >= 0 ? put_millis(out, o, nums[N_UPSTREAM_MS]) : put_raw(out, o, "null");
  o = put_text_field(out, o, ",\"flag\":\"", texts[4], lens[4]);
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
  if (lens[3] > 0) o = put_text_field(out, o, ",\"requestId\":\"", texts[3], lens[3]);
  if (nums[N_RETRIES] != -1) {
    o = put_raw(out, o, ",\"retries\":");
    o = put_int(out, o, nums[N_RETRIES]);
  }
  if (lens[5] > 0) o = put_text_field(out, o, ",\"route\":\"", texts[5], lens[5]);
  if (lens[6] > 0) o = put_text_field(out, o, ",\"pool\":\"", texts[6], lens[6]);
  if (nums[N_PROTO] != -1) o = put_raw(out, o, nums[N_PROTO] > 0 ? ",\"tls\":true" : ",\"tls\":false");
  out[o++] = '}';
  out[o++] = '\n';
  return result_of(env, (double)o);
}
