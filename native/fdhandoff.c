/*
 * Descriptor hand-off between the primary thread and the worker threads.
 *
 * A worker thread cannot receive a net.Socket, but all threads share the
 * process's descriptor table. The primary duplicates the accepted socket's
 * descriptor (F_DUPFD_CLOEXEC, so it never leaks into a child process),
 * destroys its own handle, and posts the duplicate's number to a worker that
 * wraps it with `new net.Socket({ fd })`. Closing one descriptor of a
 * duplicated pair does not shut the connection down: the socket lives until
 * the last descriptor referring to it is closed.
 *
 * Also `send`: the request path's direct writes (src/net/direct-write.ts), one
 * nonblocking sendmsg to a plain TCP socket's descriptor while node has
 * nothing queued for it.
 *
 * And, with glibc only, `trimMalloc` and `mallocStats`: giving the free pages
 * of every malloc arena back to the kernel (src/primary/memory-release.ts), and
 * what the arenas hold. Built elsewhere (musl), the two are not defined, and
 * the JS side feature-detects them. And `reduceHeaps` (native/heap-pressure.cc):
 * a memory-reducing collection asked of every thread's V8 heap. And, on Linux,
 * `pipeSize`: a larger buffer for the pipe stdout writes to (src/log-sink.ts),
 * and `tcpState`: a TLS client's TCP state, to tell its reset from its
 * half-close (src/net/peer-reset.ts).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#ifdef __linux__
#include <netinet/tcp.h>
#endif
#include <sys/socket.h>
#include <sys/uio.h>
#include <node_api.h>
#ifdef __GLIBC__
#include <malloc.h>
#include <stdlib.h>
#include <time.h>
#endif

static napi_value throw_errno(napi_env env, const char *syscall, int err) {
  char message[128];
  snprintf(message, sizeof message, "%s: %s", syscall, strerror(err));
  napi_throw_error(env, "SWY_ERR_FD_HANDOFF", message);
  return NULL;
}

static int read_fd_arg(napi_env env, napi_callback_info info, int32_t *fd) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return 0;
  if (napi_get_value_int32(env, argv[0], fd) != napi_ok || *fd < 0) return 0;
  return 1;
}

/* dup(fd) -> new fd, close-on-exec, lowest free number >= 3 */
static napi_value Duplicate(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!read_fd_arg(env, info, &fd)) {
    napi_throw_type_error(env, "SWY_ERR_FD_HANDOFF", "duplicate(fd) needs a non-negative integer");
    return NULL;
  }
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) return throw_errno(env, "fcntl(F_DUPFD_CLOEXEC)", errno);
  napi_value result;
  napi_create_int32(env, copy, &result);
  return result;
}

/* close(fd): used when a duplicated descriptor could not be handed to a worker */
static napi_value Close(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!read_fd_arg(env, info, &fd)) {
    napi_throw_type_error(env, "SWY_ERR_FD_HANDOFF", "close(fd) needs a non-negative integer");
    return NULL;
  }
  if (close(fd) != 0 && errno != EINTR) return throw_errno(env, "close", errno);
  return NULL;
}

#ifdef __linux__
#ifndef F_SETPIPE_SZ
#define F_SETPIPE_SZ 1031
#define F_GETPIPE_SZ 1032
#endif
/*
 * pipeSize(fd, bytes) -> the buffer of the pipe `fd` writes to, in bytes, after
 * growing it toward `bytes` (F_SETPIPE_SZ): each half of `bytes` is tried in
 * turn while it is above the current size (an unprivileged process may not pass
 * /proc/sys/fs/pipe-max-size, nor a user's pipe-user-pages limits). Never
 * shrinks it. -1 when `fd` is not a pipe.
 */
static napi_value PipeSize(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  int32_t fd, bytes;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_get_value_int32(env, argv[1], &bytes) != napi_ok || bytes < 0) {
    napi_throw_type_error(env, "SWY_ERR_FD_HANDOFF", "pipeSize(fd, bytes) needs two non-negative integers");
    return NULL;
  }
  int size = fcntl(fd, F_GETPIPE_SZ);
  for (int want = bytes; size >= 0 && want > size; want /= 2) {
    int grown = fcntl(fd, F_SETPIPE_SZ, want);
    if (grown >= 0) { size = grown; break; }
  }
  napi_create_int32(env, size < 0 ? -1 : size, &result);
  return result;
}
#endif

#ifdef __linux__
/*
 * tcpState(fd) -> the state of TCP socket `fd` as Linux's TCP_INFO reports it
 * (tcpi_state: 1 ESTABLISHED ... 7 CLOSE, 8 CLOSE_WAIT), or -1 when `fd` is
 * not a TCP socket. src/net/peer-reset.ts tells a reset from a half-close by it.
 */
static napi_value TcpState(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!read_fd_arg(env, info, &fd)) {
    napi_throw_type_error(env, "SWY_ERR_FD_HANDOFF", "tcpState(fd) needs a non-negative integer");
    return NULL;
  }
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  int state = -1;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && len >= 1) state = ti.tcpi_state;
  napi_value result;
  napi_create_int32(env, state, &result);
  return result;
}
#endif

/*
 * peer(fd) -> "ip:port" of the socket's peer, or null when fd is not an open,
 * connected socket. Used after a worker died mid-hand-off to tell whether a
 * descriptor number still names the connection that was handed over.
 */
static napi_value Peer(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!read_fd_arg(env, info, &fd)) {
    napi_throw_type_error(env, "SWY_ERR_FD_HANDOFF", "peer(fd) needs a non-negative integer");
    return NULL;
  }
  struct sockaddr_storage addr;
  socklen_t len = sizeof addr;
  napi_value result;
  if (getpeername(fd, (struct sockaddr *)&addr, &len) != 0) {
    napi_get_null(env, &result);
    return result;
  }
  char host[INET6_ADDRSTRLEN];
  int port = 0;
  if (addr.ss_family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)&addr;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr;
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
  } else {
    napi_get_null(env, &result);
    return result;
  }
  char text[INET6_ADDRSTRLEN + 8];
  snprintf(text, sizeof text, "%s:%d", host, port);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &result);
  return result;
}

/*
 * send(fd, a, aStart, aEnd, b, bStart, bEnd) -> bytes written (0 .. total), or -1
 * when the socket cannot take anything now (EAGAIN) or failed (any other
 * errno): the caller then writes through its net.Socket, which reports the
 * error the usual way. One nonblocking sendmsg of up to two spans, MSG_NOSIGNAL
 * (a closed peer is an error, not a signal). `b` may be null.
 * Used only while the socket's own write queue is empty (src/net/direct-write.ts).
 */
static napi_value Send(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_value result;
  int32_t fd, a_start, a_end, b_start = 0, b_end = 0;
  void *a_data = NULL, *b_data = NULL;
  size_t a_len = 0, b_len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &a_data, &a_len) != napi_ok ||
      napi_get_value_int32(env, argv[2], &a_start) != napi_ok ||
      napi_get_value_int32(env, argv[3], &a_end) != napi_ok ||
      fd < 0 || a_start < 0 || a_end < a_start || (size_t)a_end > a_len) {
    napi_throw_type_error(env, "SWY_ERR_FD_HANDOFF", "send(fd, buffer, start, end[, buffer, start, end]) needs a descriptor and spans inside the buffers");
    return NULL;
  }
  struct iovec iov[2];
  int n = 0;
  if (a_end > a_start) { iov[n].iov_base = (char *)a_data + a_start; iov[n].iov_len = (size_t)(a_end - a_start); n++; }
  if (argc >= 7) {
    napi_valuetype type;
    napi_typeof(env, argv[4], &type);
    if (type != napi_null && type != napi_undefined) {
      if (napi_get_buffer_info(env, argv[4], &b_data, &b_len) != napi_ok ||
          napi_get_value_int32(env, argv[5], &b_start) != napi_ok ||
          napi_get_value_int32(env, argv[6], &b_end) != napi_ok ||
          b_start < 0 || b_end < b_start || (size_t)b_end > b_len) {
        napi_throw_type_error(env, "SWY_ERR_FD_HANDOFF", "send(): the second span is not inside its buffer");
        return NULL;
      }
      if (b_end > b_start) { iov[n].iov_base = (char *)b_data + b_start; iov[n].iov_len = (size_t)(b_end - b_start); n++; }
    }
  }
  ssize_t written = 0;
  if (n > 0) {
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    do written = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT); while (written < 0 && errno == EINTR);
    if (written < 0) written = -1;
  }
  napi_create_int32(env, (int32_t)written, &result);
  return result;
}

#ifdef __GLIBC__
/*
 * trimMalloc() -> Promise<number>: the CPU microseconds malloc_trim(0) took.
 *
 * glibc gives a thread its own arena (up to 8 per core, each reserved 64 MB at
 * a time) and returns an arena's memory to the kernel only from its top: a
 * free chunk below a live one stays resident however long it stays free.
 * malloc_trim(0) walks every arena, each under its own lock, and
 * madvise(MADV_DONTNEED)s the whole pages inside its free chunks (glibc >= 2.8),
 * so that memory freed by any thread stops counting in the process's RSS. The
 * pages come back, zeroed by the kernel, when malloc uses them again.
 *
 * The walk took 1.4-28 ms of CPU under load (2 workers, #18), so it runs on a
 * libuv pool thread, not on the caller's event loop; a thread that mallocs in
 * an arena waits only while that one arena is walked.
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  double micros;
} TrimJob;

static void trim_execute(napi_env env, void *data) {
  (void)env;
  TrimJob *job = data;
  struct timespec t0, t1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  malloc_trim(0);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  job->micros = (double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
}

static void trim_complete(napi_env env, napi_status status, void *data) {
  TrimJob *job = data;
  napi_value result;
  if (status == napi_ok) {
    napi_create_double(env, job->micros, &result);
    napi_resolve_deferred(env, job->deferred, result);
  } else {
    napi_value message;
    napi_create_string_utf8(env, "malloc_trim was cancelled", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &result);
    napi_reject_deferred(env, job->deferred, result);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value TrimMalloc(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value promise, name;
  TrimJob *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, "SWY_ERR_FD_HANDOFF", "trimMalloc: out of memory");
    return NULL;
  }
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok) {
    free(job);
    return NULL; /* the pending exception says why */
  }
  napi_create_string_utf8(env, "switchyard:malloc_trim", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, trim_execute, trim_complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    napi_value message, error;
    napi_create_string_utf8(env, "trimMalloc: could not queue the work", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &error);
    napi_reject_deferred(env, job->deferred, error);
    if (job->work != NULL) napi_delete_async_work(env, job->work);
    free(job);
  }
  return promise;
}

#if __GLIBC_PREREQ(2, 33)
static void set_size(napi_env env, napi_value object, const char *name, size_t value) {
  napi_value v;
  napi_create_double(env, (double)value, &v);
  napi_set_named_property(env, object, name, v);
}

/*
 * mallocStats() -> { arenaBytes, mmapBytes, inUseBytes, freeBytes } summed over
 * every arena (mallinfo2): bytes the arenas took from the kernel, bytes in
 * chunks of their own mapping, bytes handed out and not freed, bytes free
 * inside the arenas (resident or not: a trimmed page is still free here).
 */
static napi_value MallocStats(napi_env env, napi_callback_info info) {
  (void)info;
  struct mallinfo2 m = mallinfo2();
  napi_value result;
  napi_create_object(env, &result);
  set_size(env, result, "arenaBytes", m.arena);
  set_size(env, result, "mmapBytes", m.hblkhd);
  set_size(env, result, "inUseBytes", m.uordblks + m.hblkhd);
  set_size(env, result, "freeBytes", m.fordblks);
  return result;
}
#endif
#endif

/* native/heap-pressure.cc */
void *swy_heap_register(void);
void swy_heap_unregister(void *isolate);
int swy_heap_reduce_all(void);

/* reduceHeaps() -> how many threads' V8 heaps were asked for a memory-reducing collection */
static napi_value ReduceHeaps(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  napi_create_int32(env, swy_heap_reduce_all(), &result);
  return result;
}

static void unregister_heap(void *isolate) {
  swy_heap_unregister(isolate);
}

/* native/access-line.c */
napi_value swy_access_line_setup(napi_env env, napi_callback_info info);

static napi_value Init(napi_env env, napi_value exports) {
  /* runs once per thread that loads the addon: remember its isolate until the thread's teardown */
  void *isolate = swy_heap_register();
  if (isolate != NULL) napi_add_env_cleanup_hook(env, unregister_heap, isolate);
  napi_property_descriptor props[] = {
    { "duplicate", NULL, Duplicate, NULL, NULL, NULL, napi_default, NULL },
    { "close", NULL, Close, NULL, NULL, NULL, napi_default, NULL },
    { "peer", NULL, Peer, NULL, NULL, NULL, napi_default, NULL },
    { "send", NULL, Send, NULL, NULL, NULL, napi_default, NULL },
    { "reduceHeaps", NULL, ReduceHeaps, NULL, NULL, NULL, napi_default, NULL },
    { "accessLineSetup", NULL, swy_access_line_setup, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
#ifdef __linux__
  napi_property_descriptor linux_only[] = {
    { "pipeSize", NULL, PipeSize, NULL, NULL, NULL, napi_default, NULL },
    { "tcpState", NULL, TcpState, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof linux_only / sizeof linux_only[0], linux_only);
#endif
#ifdef __GLIBC__
  napi_property_descriptor glibc[] = {
    { "trimMalloc", NULL, TrimMalloc, NULL, NULL, NULL, napi_default, NULL },
#if __GLIBC_PREREQ(2, 33)
    { "mallocStats", NULL, MallocStats, NULL, NULL, NULL, napi_default, NULL },
#endif
  };
  napi_define_properties(env, exports, sizeof glibc / sizeof glibc[0], glibc);
#endif
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
