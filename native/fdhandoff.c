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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
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

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "duplicate", NULL, Duplicate, NULL, NULL, NULL, napi_default, NULL },
    { "close", NULL, Close, NULL, NULL, NULL, napi_default, NULL },
    { "peer", NULL, Peer, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
