// RpcServer: serves an open Broker to other processes over Cap'n Proto RPC
// (the wire contract: lib/schema/rpc.capnp, docs/rpc.md). The host keeps
// using the Broker in-process while it is served; clients use
// txmq::RemoteBroker (include/txmq/remote_broker.h).
//
//   txmq::ServeOptions serve;
//   serve.listen = "unix:/run/orders/mq.sock";
//   auto server = txmq::RpcServer::Start(*broker, serve);
//   if (!server.ok()) return server.status();
//   ...
//   (*server)->Stop();   // before the Broker goes
//
// Security:
//   - A Unix socket is created with owner-only permissions (0600, change
//     with `unix_mode`; it is bound in a private directory and moved into
//     place, so no one connects before), and the server also refuses a peer
//     of another user but root (SO_PEERCRED), unless `unix_any_user`. An
//     existing path is taken only if it is a socket nobody listens on.
//   - TCP needs the shared token (`token`, typically read from a file given
//     to the server and to its clients); a client without it is refused.
//     Listening on an address that is not loopback without a token is
//     refused unless `insecure_no_token`.
//
// Threads: one thread runs the connections (a KJ event loop); calls that
// wait for the broker run on `worker_threads` worker threads, so a slow
// call holds up no other connection. Thread-safe; Stop and the destructor
// from any thread but the server's own.
//
// Lifetime: the Broker must outlive the server: Stop (or destroy) the
// server first.

#ifndef TXMQ_RPC_SERVER_H_
#define TXMQ_RPC_SERVER_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txmq/broker.h"

namespace txmq {

struct ServeOptions {
  // "unix:/path/to/socket" or "host:port" (port 0: any free port; see
  // RpcServer::address()).
  std::string listen;
  // The shared secret clients present; required for a TCP address that is
  // not loopback (unless insecure_no_token). Empty: no token is asked for.
  std::string token;
  bool insecure_no_token = false;
  // Permissions of the Unix socket file, and whether peers of another user
  // are served.
  unsigned unix_mode = 0600;
  bool unix_any_user = false;
  // A connection that has not logged in this long after it was accepted
  // is closed.
  absl::Duration login_timeout = absl::Seconds(10);
  // At most this many connections that have not logged in yet: one more is
  // closed as soon as it is accepted (RpcServerStats::refused_connections),
  // so peers that connect and stay silent cannot use up the server's
  // descriptors. Logged-in connections are not limited. 0: 64.
  size_t max_pending_logins = 64;
  // Threads that run calls which wait for the broker (batches,
  // transactions, topic changes). Sends do not take one.
  size_t worker_threads = 4;
  // The largest RPC message accepted, in bytes: a bigger one is refused
  // (and its connection closed) before it is read whole. 0: 64 MiB. A
  // batch over RPC also holds at most 10,000 messages.
  size_t max_request_bytes = 0;
};

struct RpcServerStats {
  uint64_t connections = 0;  // open now
  // Producer groups whose checker is a client's (registered through this
  // server and not yet unregistered, by the client or by its disconnect).
  uint64_t remote_checkers = 0;
  // Connections closed at once because max_pending_logins connections
  // were waiting to log in (since Start).
  uint64_t refused_connections = 0;
};

class RpcServer {
 public:
  // Binds and starts serving. Errors: INVALID_ARGUMENT (a bad address, no
  // token where one is required), UNAVAILABLE / PERMISSION_DENIED (cannot
  // bind: in use, no permission).
  static absl::StatusOr<std::unique_ptr<RpcServer>> Start(
      Broker& broker, const ServeOptions& options);

  // Stops: no new connections; calls in progress finish (their answers may
  // not reach clients that are cut off); clients are disconnected (their
  // calls then fail with UNAVAILABLE); the socket file is removed.
  // Idempotent.
  virtual ~RpcServer() = default;
  virtual void Stop() = 0;

  virtual RpcServerStats Stats() const = 0;

  // The address served, as a client would pass it: "unix:/path" or
  // "host:port" with the port actually bound.
  virtual const std::string& address() const = 0;
};

}  // namespace txmq

#endif  // TXMQ_RPC_SERVER_H_
