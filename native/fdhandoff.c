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
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <node_api.h>

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

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "duplicate", NULL, Duplicate, NULL, NULL, NULL, napi_default, NULL },
    { "close", NULL, Close, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
