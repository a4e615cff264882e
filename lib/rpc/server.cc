// RpcServer (include/txmq/rpc_server.h).
//
// One thread runs a KJ event loop with the listener and every connection.
// Broker calls never run on it: a call's sends go to the broker's writer as
// one request (LocalProducer::SendEach), whose completion fulfils a
// cross-thread promise on the writer thread; calls that block (batches,
// transactions, topic changes) run on a small worker pool and fulfil theirs
// the same way. So the loop only moves bytes and never waits for a disk.

#include "txmq/rpc_server.h"

// GCC 12 reports the absl::Status inside kj's ExceptionOr<T> (a union in
// kj::Maybe) as maybe-uninitialized: a false positive of its union analysis.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <arpa/inet.h>
#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.h>
#include <kj/async-io.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "broker/producer_impl.h"
#include "log/message_view_decoder.h"
#include "rpc.capnp.h"
#include "rpc/convert.h"
#include "util/strings.h"

namespace txmq {
namespace {

using SendOutcome = absl::StatusOr<SendResult>;

constexpr size_t kDefaultMaxRequestBytes = size_t{64} << 20;

// Threads that run blocking broker calls.
class WorkerPool {
 public:
  explicit WorkerPool(size_t threads) {
    for (size_t i = 0; i < threads; ++i) {
      threads_.emplace_back([this] { Run(); });
    }
  }
  ~WorkerPool() { Stop(); }

  void Submit(std::function<void()> job) {
    absl::MutexLock lock(&mu_);
    jobs_.push_back(std::move(job));
  }

  // Runs what was submitted, then joins. Idempotent.
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  void Run() {
    while (true) {
      std::function<void()> job;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](WorkerPool* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
              return p->stopping_ || !p->jobs_.empty();
            },
            this));
        if (jobs_.empty()) return;  // stopping, and nothing left
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  absl::Mutex mu_;
  std::deque<std::function<void()>> jobs_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// True for "localhost" and loopback addresses (127.0.0.0/8, ::1, and
// ::ffff:127.0.0.0/104), by parsing, not by prefix.
bool IsLoopback(std::string host) {
  if (host == "localhost") return true;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  in_addr v4;
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

// Whether a process listens on the Unix socket at `path` (connect works).
bool SomeoneListens(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  const bool listens =
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return listens;
}

// The token a client presents, compared in time independent of where it
// differs.
bool SameToken(const std::string& want, std::string_view got) {
  if (want.size() != got.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff |= static_cast<unsigned char>(want[i] ^ got[i]);
  }
  return diff == 0;
}

std::string Str(capnp::Text::Reader text) {
  return std::string(text.begin(), text.size());
}

kj::StringPtr Text(const std::string& s) {
  return kj::StringPtr(s.c_str(), s.size());
}

class ServerImpl;

// Runs `call` on the worker pool; the promise resolves on the loop thread
// with its result.
template <typename T>
kj::Promise<T> OnWorker(WorkerPool& pool, std::function<T()> call) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<T>();
  auto fulfiller =
      std::make_shared<kj::Own<kj::CrossThreadPromiseFulfiller<T>>>(
          kj::mv(paf.fulfiller));
  pool.Submit(
      [fulfiller, call = std::move(call)] { (*fulfiller)->fulfill(call()); });
  return kj::mv(paf.promise);
}

class BrokerService final : public rpc::Broker::Server {
 public:
  // `connection`: the connection this broker capability was given on.
  BrokerService(ServerImpl* server, uint64_t connection)
      : server_(server), connection_(connection) {}

  kj::Promise<void> createTopic(CreateTopicContext context) override;
  kj::Promise<void> deleteTopic(DeleteTopicContext context) override;
  kj::Promise<void> listTopics(ListTopicsContext context) override;
  kj::Promise<void> describeTopic(DescribeTopicContext context) override;
  kj::Promise<void> send(SendContext context) override;
  kj::Promise<void> sendBatch(SendBatchContext context) override;
  kj::Promise<void> begin(BeginContext context) override;
  kj::Promise<void> commit(CommitContext context) override;
  kj::Promise<void> rollback(RollbackContext context) override;
  kj::Promise<void> registerChecker(RegisterCheckerContext context) override;
  kj::Promise<void> unregisterChecker(
      UnregisterCheckerContext context) override;
  kj::Promise<void> subscribe(SubscribeContext context) override;
  kj::Promise<void> sendEach(SendEachContext context) override;

 private:
  ServerImpl* const server_;
  const uint64_t connection_;
};

class GateService final : public rpc::Gate::Server {
 public:
  // `logged_in` is set by the first successful login (the connection's
  // login deadline reads it).
  GateService(ServerImpl* server, bool token_required, uint64_t connection,
              std::shared_ptr<bool> logged_in)
      : server_(server),
        token_required_(token_required),
        connection_(connection),
        logged_in_(std::move(logged_in)) {}
  kj::Promise<void> login(LoginContext context) override;

 private:
  ServerImpl* const server_;
  const bool token_required_;
  const uint64_t connection_;
  const std::shared_ptr<bool> logged_in_;
};

// How long the broker waits for a remote checker's answer before it counts
// as unknown (and is asked again later, with back-off).
constexpr auto kRemoteCheckTimeout = 30 * kj::SECONDS;

// The checker the broker holds for a group whose checker is a client's:
// each Check asks that client, through the server's loop.
class RemoteChecker final : public TransactionChecker {
 public:
  RemoteChecker(ServerImpl* server, std::string group, uint64_t id)
      : server_(server), group_(std::move(group)), id_(id) {}
  TransactionState Check(const HalfMessage& half) override;

 private:
  ServerImpl* const server_;
  const std::string group_;
  const uint64_t id_;
};

class ServerImpl final : public RpcServer {
 public:
  ServerImpl(Broker& broker, const ServeOptions& options)
      : broker_(broker),
        options_(options),
        pool_(std::max<size_t>(1, options.worker_threads)) {}

  ~ServerImpl() noexcept override { Stop(); }

  // ---- remote checkers
  //
  // A registration has an id (increasing). Two registries:
  //   - the loop's, `caps_` (loop thread only): the client capability of
  //     each live registration, by (group, id). A RemoteChecker asks only
  //     the capability of its own id, so a replaced or failed registration
  //     never answers for another.
  //   - the broker's, applied by worker jobs under `checkers_mu_`:
  //     `applied_` (the registration the broker holds for a group, and its
  //     RemoteChecker) and `high_water_` (the newest id registered or
  //     removed per group), so that jobs that run out of order never let an
  //     older registration replace a newer one or outlive its removal.
  // Removal uses UnregisterCheckerIf: a checker the host (or another
  // server) registered meanwhile is left alone.

  // Loop thread. Records `checker` and returns the registration's id.
  uint64_t AddChecker(const std::string& group, uint64_t connection,
                      rpc::TransactionChecker::Client checker) {
    const uint64_t id = ++next_registration_;
    caps_[group].emplace(
        id, CheckerCap{connection, kj::heap<rpc::TransactionChecker::Client>(
                                       kj::mv(checker))});
    return id;
  }

  // Worker thread: applies registration `id` to the broker (with `policy`),
  // or removes it (policy null). Refused once the server is stopping.
  absl::Status ApplyChecker(const std::string& group, uint64_t id,
                            const CheckPolicy* policy) {
    absl::MutexLock lock(&checkers_mu_);
    uint64_t& high = high_water_[group];
    if (policy == nullptr) {  // remove
      high = std::max(high, id);
      auto it = applied_.find(group);
      if (it == applied_.end() || it->second.id != id) return absl::OkStatus();
      std::shared_ptr<RemoteChecker> checker = std::move(it->second.checker);
      applied_.erase(it);
      remote_checkers_.store(applied_.size(), std::memory_order_relaxed);
      return broker_.UnregisterCheckerIf(group, checker.get());
    }
    if (stopping_) {
      return absl::UnavailableError("the txmq server is stopping");
    }
    if (id <= high) return absl::OkStatus();  // a newer one came first
    auto checker = std::make_shared<RemoteChecker>(this, group, id);
    absl::Status s = broker_.RegisterChecker(group, checker, *policy);
    if (!s.ok()) return s;
    high = id;
    applied_[group] = Applied{id, std::move(checker)};
    remote_checkers_.store(applied_.size(), std::memory_order_relaxed);
    return absl::OkStatus();
  }

  // Stop: takes every remote checker back from the broker; later
  // registrations are refused.
  void RemoveAllCheckers() {
    absl::MutexLock lock(&checkers_mu_);
    stopping_ = true;
    for (auto& [group, applied] : applied_) {
      broker_.UnregisterCheckerIf(group, applied.checker.get()).IgnoreError();
    }
    applied_.clear();
    remote_checkers_.store(0, std::memory_order_relaxed);
  }

  // Loop thread: the newest registration of `group` made on `connection`.
  std::optional<uint64_t> CheckerOf(const std::string& group,
                                    uint64_t connection) {
    auto it = caps_.find(group);
    if (it == caps_.end()) return std::nullopt;
    for (auto id = it->second.rbegin(); id != it->second.rend(); ++id) {
      if (id->second.connection == connection) return id->first;
    }
    return std::nullopt;
  }

  // Loop thread: after registration `id` was applied, forgets the older
  // ones of the group (replaced); after it failed or was removed, forgets
  // it alone.
  void DropChecker(const std::string& group, uint64_t id, bool applied) {
    auto it = caps_.find(group);
    if (it == caps_.end()) return;
    if (applied) {
      it->second.erase(it->second.begin(), it->second.lower_bound(id));
    } else {
      it->second.erase(id);
    }
    if (it->second.empty()) caps_.erase(it);
  }

  // A check-back thread of the broker: asks the client (through the loop).
  TransactionState CheckRemotely(const std::string& group, uint64_t id,
                                 const HalfMessage& half) {
    kj::Own<const kj::Executor> executor;
    {
      absl::MutexLock lock(&mu_);
      if (executor_.get() != nullptr) executor = executor_->addRef();
    }
    if (executor.get() == nullptr) return TransactionState::kUnknown;
    const std::string record(half.message.record());
    TransactionState state = TransactionState::kUnknown;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] {
                   state = executor->executeSync(
                       [&]() -> kj::Promise<TransactionState> {
                         auto g = caps_.find(group);
                         if (g == caps_.end())
                           return TransactionState::kUnknown;
                         auto it = g->second.find(id);
                         if (it == g->second.end()) {
                           return TransactionState::kUnknown;
                         }
                         auto req = it->second.cap->checkRequest();
                         auto h = req.initHalf();
                         h.setTransactionId(capnp::Data::Reader(
                             half.id.bytes().data(), TransactionId::kSize));
                         h.setGroup(Text(half.group));
                         h.setBeginTimeMs(absl::ToUnixMillis(half.begin_time));
                         h.setChecks(half.checks);
                         h.setRecord(capnp::Data::Reader(
                             reinterpret_cast<const kj::byte*>(record.data()),
                             record.size()));
                         return timer_
                             ->timeoutAfter(kRemoteCheckTimeout, req.send())
                             .then(
                                 [](auto r) {
                                   switch (r.getState()) {
                                     case 1:
                                       return TransactionState::kCommit;
                                     case 2:
                                       return TransactionState::kRollback;
                                   }
                                   return TransactionState::kUnknown;
                                 },
                                 [](kj::Exception&&) {
                                   return TransactionState::kUnknown;
                                 });
                       });
                 })) {
      (void)e;  // the loop is gone: unknown, asked again later
    }
    return state;
  }

  // Loop thread: a connection closed; its checkers stop answering, and the
  // broker forgets them (unless replaced meanwhile).
  // Loop thread: a connection logged in for the first time.
  void LoggedIn() { --pending_logins_; }

  void ConnectionClosed(uint64_t connection) {
    for (auto g = caps_.begin(); g != caps_.end();) {
      for (auto it = g->second.begin(); it != g->second.end();) {
        if (it->second.connection != connection) {
          ++it;
          continue;
        }
        const std::string group = g->first;
        const uint64_t id = it->first;
        it = g->second.erase(it);
        pool_.Submit([this, group, id] {
          ApplyChecker(group, id, nullptr).IgnoreError();
        });
      }
      g = g->second.empty() ? caps_.erase(g) : std::next(g);
    }
  }

  absl::Status Start() {
    std::promise<absl::Status> started;
    std::future<absl::Status> result = started.get_future();
    thread_ = std::thread([this, &started] { Run(started); });
    absl::Status s = result.get();
    if (!s.ok()) {
      thread_.join();
      pool_.Stop();
    }
    return s;
  }

  void Stop() override {
    kj::Own<const kj::Executor> executor;
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      stopped_ = true;
      if (executor_.get() != nullptr) executor = executor_->addRef();
    }
    // The broker outlives this server: take the remote checkers back from
    // it first (a check in progress finishes through the loop, still
    // running), and refuse registrations from now on.
    RemoveAllCheckers();
    // Not under mu_: the loop thread takes it (ProducerFor).
    if (executor.get() != nullptr) {
      executor->executeSync([this] { stop_->fulfill(); });
    }
    if (thread_.joinable()) thread_.join();
    pool_.Stop();
    // Sends in flight complete into promises nobody waits for any more;
    // their callbacks touch this object, so wait for them (rare: only
    // sends caught by the stop).
    while (sends_in_flight_.load(std::memory_order_acquire) != 0) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    // Removes the socket file, unless another server replaced it since.
    struct stat st;
    if (!socket_path_.empty() && ::stat(socket_path_.c_str(), &st) == 0 &&
        st.st_dev == socket_dev_ && st.st_ino == socket_ino_) {
      ::unlink(socket_path_.c_str());
    }
  }

  const std::string& address() const override { return address_; }

  RpcServerStats Stats() const override {
    RpcServerStats stats;
    stats.connections = open_connections_.load(std::memory_order_relaxed);
    stats.refused_connections =
        refused_connections_.load(std::memory_order_relaxed);
    stats.remote_checkers = remote_checkers_.load(std::memory_order_relaxed);
    return stats;
  }

  Broker& broker() { return broker_; }
  WorkerPool& pool() { return pool_; }
  const ServeOptions& options() const { return options_; }

  // A producer per (group, selector), made on first use; `wire_selector`
  // as the schema has it. Errors: INVALID_ARGUMENT (an unknown selector, a
  // bad group name).
  absl::StatusOr<Producer*> ProducerFor(const std::string& group,
                                        uint8_t wire_selector) {
    absl::StatusOr<QueueSelector> parsed = rpc::SelectorFromWire(wire_selector);
    if (!parsed.ok()) return parsed.status();
    const QueueSelector selector = *parsed;
    absl::MutexLock lock(&mu_);
    auto key = std::make_pair(group, static_cast<int>(selector));
    auto it = producers_.find(key);
    if (it != producers_.end()) return it->second.get();
    absl::StatusOr<std::unique_ptr<Producer>> p =
        broker_.CreateProducer({.group = group, .selector = selector});
    if (!p.ok()) return p.status();
    Producer* raw = p->get();
    producers_.emplace(key, *std::move(p));
    return raw;
  }

  // Sends each of `messages` on its own; resolves on the loop thread with
  // one outcome per message, in order. A broker from Broker::Open takes
  // them as one writer request and answers on its writer thread (no
  // callback thread between); any other Producer goes through SendAsync.
  kj::Promise<std::vector<SendOutcome>> SendEach(
      Producer& producer, std::vector<Message> messages) {
    using Fulfiller =
        kj::Own<kj::CrossThreadPromiseFulfiller<std::vector<SendOutcome>>>;
    auto paf =
        kj::newPromiseAndCrossThreadFulfiller<std::vector<SendOutcome>>();
    auto fulfiller = std::make_shared<Fulfiller>(kj::mv(paf.fulfiller));
    // Counted until the answer is handed over: Stop waits for it, since the
    // completion touches this object.
    sends_in_flight_.fetch_add(1, std::memory_order_relaxed);
    auto finish = [this, fulfiller](std::vector<SendOutcome> outcomes) {
      (*fulfiller)->fulfill(kj::mv(outcomes));
      *fulfiller = nullptr;  // before the count drops
      sends_in_flight_.fetch_sub(1, std::memory_order_release);
    };
    if (auto* local = dynamic_cast<LocalProducer*>(&producer)) {
      std::vector<const Message*> each;
      for (const Message& m : messages) each.push_back(&m);
      local->SendEach(each, std::move(finish));  // encodes before it returns
      return kj::mv(paf.promise);
    }
    if (messages.empty()) {
      finish({});
      return kj::mv(paf.promise);
    }
    struct Pending {
      std::mutex mu;
      std::vector<SendOutcome> outcomes;
      size_t left;
    };
    auto pending = std::make_shared<Pending>();
    pending->outcomes.resize(messages.size());
    pending->left = messages.size();
    for (size_t i = 0; i < messages.size(); ++i) {
      producer.SendAsync(messages[i], [pending, finish, i](SendOutcome r) {
        std::unique_lock<std::mutex> lock(pending->mu);
        pending->outcomes[i] = std::move(r);
        if (--pending->left > 0) return;
        lock.unlock();
        finish(std::move(pending->outcomes));
      });
    }
    return kj::mv(paf.promise);
  }

 private:
  struct Connection {
    Connection(kj::Own<kj::AsyncIoStream> s, capnp::Capability::Client gate,
               capnp::ReaderOptions reader_options)
        : stream(kj::mv(s)),
          network(*stream, capnp::rpc::twoparty::Side::SERVER, reader_options),
          rpc(capnp::makeRpcServer(network, kj::mv(gate))) {}
    kj::Own<kj::AsyncIoStream> stream;
    capnp::TwoPartyVatNetwork network;
    capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  };

  class ErrorHandler final : public kj::TaskSet::ErrorHandler {
   public:
    void taskFailed(kj::Exception&&) override {}  // a connection ended
  };

  // Parses options_.listen into (is_unix, host, path).
  absl::Status CheckAddress(bool* is_unix, std::string* host) {
    const std::string& listen = options_.listen;
    if (absl::StartsWith(listen, "unix:")) {
      *is_unix = true;
      socket_path_ = listen.substr(5);
      if (socket_path_.empty()) {
        return absl::InvalidArgumentError(
            "listen address 'unix:' has no path; write unix:/path/to/socket");
      }
      return absl::OkStatus();
    }
    *is_unix = false;
    const size_t colon = listen.rfind(':');
    uint32_t port = 0;
    if (colon == std::string::npos || colon == 0 ||
        !absl::SimpleAtoi(absl::string_view(listen).substr(colon + 1), &port) ||
        port > 65535) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "listen address '%s' is neither unix:/path nor host:port", listen));
    }
    *host = listen.substr(0, colon);
    if (options_.token.empty() && !IsLoopback(*host) &&
        !options_.insecure_no_token) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "refusing to listen on '%s' without a token: anyone who reaches "
          "the address could use the broker; give a token (a file both "
          "sides read), listen on loopback or a Unix socket, or force it "
          "(insecure_no_token)",
          listen));
    }
    return absl::OkStatus();
  }

  void Run(std::promise<absl::Status>& started) {
    bool is_unix = false;
    std::string host;
    if (absl::Status s = CheckAddress(&is_unix, &host); !s.ok()) {
      started.set_value(s);
      return;
    }
    kj::AsyncIoContext io = kj::setupAsyncIo();
    timer_ = &io.provider->getTimer();
    kj::Own<kj::ConnectionReceiver> listener;
    // A Unix socket is bound in a private (0700) directory next to its
    // path, given its mode there, then renamed into place: no one can
    // connect before the mode is set. An existing path is replaced only
    // when it is a socket nobody listens on (a server that died).
    std::string bind_path = socket_path_, private_dir;
    if (is_unix) {
      struct stat st;
      if (::lstat(socket_path_.c_str(), &st) == 0) {
        absl::Status refused;
        if (!S_ISSOCK(st.st_mode)) {
          refused = absl::FailedPreconditionError(absl::StrFormat(
              "'%s' exists and is not a socket; choose another path",
              socket_path_));
        } else if (SomeoneListens(socket_path_)) {
          refused = absl::UnavailableError(absl::StrFormat(
              "another server listens on '%s' already", socket_path_));
        }
        if (!refused.ok()) {
          socket_path_.clear();
          started.set_value(refused);
          return;
        }
      }
      std::string tmpl =
          std::filesystem::path(socket_path_).parent_path().string();
      tmpl = (tmpl.empty() ? std::string(".") : tmpl) + "/.txmq-bind-XXXXXX";
      if (::mkdtemp(tmpl.data()) == nullptr) {
        const int err = errno;
        socket_path_.clear();
        started.set_value(absl::PermissionDeniedError(
            absl::StrFormat("cannot create a directory next to '%s': %s",
                            options_.listen, std::strerror(err))));
        return;
      }
      private_dir = tmpl;
      bind_path = private_dir + "/s";
    }
    auto cleanup_private = [&] {
      if (private_dir.empty()) return;
      ::unlink(bind_path.c_str());
      ::rmdir(private_dir.c_str());
    };
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] {
                   auto address =
                       io.provider->getNetwork()
                           .parseAddress(is_unix ? kj::str("unix:", bind_path)
                                                 : kj::str(options_.listen))
                           .wait(io.waitScope);
                   listener = address->listen();
                 })) {
      cleanup_private();
      socket_path_.clear();
      started.set_value(absl::UnavailableError(
          absl::StrFormat("cannot listen on '%s': %s", options_.listen,
                          e->getDescription().cStr())));
      return;
    }
    if (is_unix) {
      if (::chmod(bind_path.c_str(), options_.unix_mode) != 0 ||
          ::rename(bind_path.c_str(), socket_path_.c_str()) != 0) {
        const int err = errno;
        cleanup_private();
        socket_path_.clear();
        started.set_value(absl::PermissionDeniedError(
            absl::StrFormat("cannot put the socket at '%s': %s",
                            options_.listen, std::strerror(err))));
        return;
      }
      ::rmdir(private_dir.c_str());
      struct stat st;
      if (::stat(socket_path_.c_str(), &st) == 0) {
        socket_dev_ = st.st_dev;
        socket_ino_ = st.st_ino;
      }
      address_ = options_.listen;
    } else {
      address_ = absl::StrFormat("%s:%d", host, listener->getPort());
    }
    auto paf = kj::newPromiseAndFulfiller<void>();
    {
      absl::MutexLock lock(&mu_);
      executor_ = kj::getCurrentThreadExecutor().addRef();
      stop_ = kj::mv(paf.fulfiller);
    }
    started.set_value(absl::OkStatus());

    const bool token_required = !options_.token.empty();
    const size_t max_pending_logins = options_.max_pending_logins != 0
                                          ? options_.max_pending_logins
                                          : size_t{64};
    capnp::ReaderOptions reader_options;
    const size_t max_bytes = options_.max_request_bytes != 0
                                 ? options_.max_request_bytes
                                 : kDefaultMaxRequestBytes;
    reader_options.traversalLimitInWords = max_bytes / 8 + 1024;
    ErrorHandler errors;
    kj::TaskSet connections(errors);
    std::function<kj::Promise<void>()> accept;
    accept = [&]() -> kj::Promise<void> {
      return listener->accept().then(
          [&](kj::Own<kj::AsyncIoStream> stream) -> kj::Promise<void> {
            if (is_unix && !options_.unix_any_user && !SameUser(*stream)) {
              return accept();  // dropped: another user's process
            }
            if (pending_logins_ >= max_pending_logins) {
              // Dropped (closing it): too many peers have not logged in.
              refused_connections_.fetch_add(1, std::memory_order_relaxed);
              return accept();
            }
            ++pending_logins_;
            const uint64_t id = ++next_connection_;
            open_connections_.fetch_add(1, std::memory_order_relaxed);
            auto logged_in = std::make_shared<bool>(false);
            capnp::Capability::Client gate =
                kj::heap<GateService>(this, token_required, id, logged_in);
            auto connection = kj::heap<Connection>(kj::mv(stream), kj::mv(gate),
                                                   reader_options);
            // A connection that has not logged in by the deadline is
            // closed: idle unauthenticated peers hold no descriptors.
            auto deadline = io.provider->getTimer()
                                .afterDelay(absl::ToInt64Milliseconds(
                                                options_.login_timeout) *
                                            kj::MILLISECONDS)
                                .then([logged_in]() -> kj::Promise<void> {
                                  if (*logged_in) return kj::NEVER_DONE;
                                  return kj::READY_NOW;
                                });
            auto done = connection->network.onDisconnect().exclusiveJoin(
                kj::mv(deadline));
            connections.add(
                done.attach(kj::mv(connection)).then([this, id, logged_in] {
                  if (!*logged_in) --pending_logins_;
                  open_connections_.fetch_sub(1, std::memory_order_relaxed);
                  ConnectionClosed(id);
                }));
            return accept();
          },
          [&](kj::Exception&&) -> kj::Promise<void> {
            // Out of descriptors or memory for now (EMFILE, ENOBUFS): wait
            // and accept again, rather than end the server.
            return io.provider->getTimer()
                .afterDelay(100 * kj::MILLISECONDS)
                .then([&] { return accept(); });
          });
    };
    paf.promise.exclusiveJoin(accept()).wait(io.waitScope);
    {
      absl::MutexLock lock(&mu_);
      executor_ = nullptr;
    }
    caps_.clear();
    // Leaving the scope destroys the connections (clients see a
    // disconnect) and the listener.
  }

  static bool SameUser(kj::AsyncIoStream& stream) {
    struct ucred cred;
    uint length = sizeof(cred);
    bool same = false;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] {
                   stream.getsockopt(SOL_SOCKET, SO_PEERCRED, &cred, &length);
                   same = cred.uid == ::geteuid() || cred.uid == 0;
                 })) {
      (void)e;
      return false;
    }
    return same;
  }

  Broker& broker_;
  const ServeOptions options_;
  WorkerPool pool_;
  std::thread thread_;
  std::string address_;
  std::string socket_path_;
  uint64_t socket_dev_ = 0, socket_ino_ = 0;

  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  kj::Own<const kj::Executor> executor_ ABSL_GUARDED_BY(mu_);
  // Loop thread only (through executor_).
  kj::Own<kj::PromiseFulfiller<void>> stop_;
  std::atomic<int> sends_in_flight_{0};
  std::map<std::pair<std::string, int>, std::unique_ptr<Producer>> producers_
      ABSL_GUARDED_BY(mu_);

  // Loop thread only.
  kj::Timer* timer_ = nullptr;
  uint64_t next_connection_ = 0;
  struct CheckerCap {
    uint64_t connection;
    kj::Own<rpc::TransactionChecker::Client> cap;
  };
  std::map<std::string, std::map<uint64_t, CheckerCap>> caps_;
  std::atomic<uint64_t> next_registration_{0};
  absl::Mutex checkers_mu_;
  struct Applied {
    uint64_t id = 0;
    std::shared_ptr<RemoteChecker> checker;
  };
  std::map<std::string, Applied> applied_ ABSL_GUARDED_BY(checkers_mu_);
  std::map<std::string, uint64_t> high_water_ ABSL_GUARDED_BY(checkers_mu_);
  bool stopping_ ABSL_GUARDED_BY(checkers_mu_) = false;
  std::atomic<uint64_t> remote_checkers_{0};
  std::atomic<uint64_t> open_connections_{0};
  std::atomic<uint64_t> refused_connections_{0};
  // Accepted connections that have not logged in. Loop thread only.
  size_t pending_logins_ = 0;
};

TransactionState RemoteChecker::Check(const HalfMessage& half) {
  return server_->CheckRemotely(group_, id_, half);
}

kj::Promise<void> GateService::login(LoginContext context) {
  const capnp::Text::Reader token = context.getParams().getToken();
  auto results = context.getResults();
  if (token_required_ &&
      !SameToken(server_->options().token,
                 std::string_view(token.begin(), token.size()))) {
    rpc::ToWire(absl::PermissionDeniedError(
                    "the txmq server refused the token: give the token file "
                    "the server was started with"),
                results.initStatus());
    return kj::READY_NOW;
  }
  rpc::ToWire(absl::OkStatus(), results.initStatus());
  results.setBroker(kj::heap<BrokerService>(server_, connection_));
  if (!*logged_in_) {
    *logged_in_ = true;
    server_->LoggedIn();
  }
  return kj::READY_NOW;
}

// Builds the answer of a call from a status (and, when OK, `fill`).
template <typename Context>
void Answer(Context& context, const absl::Status& status) {
  rpc::ToWire(status, context.getResults().initStatus());
}

kj::Promise<void> BrokerService::createTopic(CreateTopicContext context) {
  auto p = context.getParams();
  std::string name = Str(p.getName());
  TopicOptions options{.queues = p.getQueues()};
  if (p.getRetentionMs() < 0) {
    options.retention = absl::InfiniteDuration();
  } else if (p.getRetentionMs() > 0) {
    options.retention = absl::Milliseconds(p.getRetentionMs());
  }
  Broker& broker = server_->broker();
  return OnWorker<absl::Status>(server_->pool(),
                                [&broker, name, options] {
                                  return broker.CreateTopic(name, options);
                                })
      .then([context](absl::Status s) mutable { Answer(context, s); });
}

kj::Promise<void> BrokerService::deleteTopic(DeleteTopicContext context) {
  std::string name = Str(context.getParams().getName());
  Broker& broker = server_->broker();
  return OnWorker<absl::Status>(
             server_->pool(),
             [&broker, name] { return broker.DeleteTopic(name); })
      .then([context](absl::Status s) mutable { Answer(context, s); });
}

kj::Promise<void> BrokerService::listTopics(ListTopicsContext context) {
  // In memory: no wait.
  std::vector<TopicInfo> topics = server_->broker().ListTopics();
  auto list = context.getResults().initTopics(topics.size());
  for (size_t i = 0; i < topics.size(); ++i) rpc::ToWire(topics[i], list[i]);
  return kj::READY_NOW;
}

kj::Promise<void> BrokerService::describeTopic(DescribeTopicContext context) {
  const std::string name = Str(context.getParams().getName());
  absl::StatusOr<TopicInfo> info = server_->broker().DescribeTopic(name);
  Answer(context, info.status());
  if (info.ok()) rpc::ToWire(*info, context.getResults().initTopic());
  return kj::READY_NOW;
}

kj::Promise<void> BrokerService::send(SendContext context) {
  auto p = context.getParams();
  absl::StatusOr<Producer*> producer =
      server_->ProducerFor("", p.getSelector());
  if (!producer.ok()) {
    Answer(context, producer.status());
    return kj::READY_NOW;
  }
  // Decoded before anything is counted: a malformed message throws here.
  absl::StatusOr<Message> message = rpc::DecodeWire(p.getMessage());
  if (!message.ok()) {
    Answer(context, message.status());
    return kj::READY_NOW;
  }
  std::vector<Message> one;
  one.push_back(*std::move(message));
  return server_->SendEach(**producer, std::move(one))
      .then([context](std::vector<SendOutcome> sent) mutable {
        const SendOutcome& r = sent.front();
        Answer(context, r.status());
        if (r.ok()) rpc::ToWire(*r, context.getResults().initResult());
      });
}

kj::Promise<void> BrokerService::sendBatch(SendBatchContext context) {
  auto p = context.getParams();
  absl::StatusOr<Producer*> producer =
      server_->ProducerFor("", p.getSelector());
  if (!producer.ok()) {
    Answer(context, producer.status());
    return kj::READY_NOW;
  }
  if (p.getMessages().size() > rpc::kMaxWireBatch) {
    Answer(context, absl::InvalidArgumentError(absl::StrFormat(
                        "a batch over RPC holds at most %d messages, not %d",
                        rpc::kMaxWireBatch, p.getMessages().size())));
    return kj::READY_NOW;
  }
  std::vector<Message> messages;
  for (auto m : p.getMessages()) {
    absl::StatusOr<Message> decoded = rpc::DecodeWire(m);
    if (!decoded.ok()) {
      Answer(context, decoded.status());
      return kj::READY_NOW;
    }
    messages.push_back(*std::move(decoded));
  }
  using Result = absl::StatusOr<std::vector<SendResult>>;
  Producer* target = *producer;
  return OnWorker<Result>(server_->pool(),
                          [target, messages = std::move(messages)] {
                            return target->SendBatch(messages);
                          })
      .then([context](Result r) mutable {
        Answer(context, r.status());
        if (!r.ok()) return;
        auto list = context.getResults().initResults(r->size());
        for (size_t i = 0; i < r->size(); ++i) rpc::ToWire((*r)[i], list[i]);
      });
}

kj::Promise<void> BrokerService::begin(BeginContext context) {
  auto p = context.getParams();
  const std::string group = Str(p.getGroup());
  if (group.empty()) {
    Answer(context, absl::FailedPreconditionError(
                        "Begin needs a producer group: create the producer "
                        "with ProducerOptions::group"));
    return kj::READY_NOW;
  }
  absl::StatusOr<Producer*> producer =
      server_->ProducerFor(group, p.getSelector());
  if (!producer.ok()) {
    Answer(context, producer.status());
    return kj::READY_NOW;
  }
  absl::StatusOr<Message> decoded = rpc::DecodeWire(p.getMessage());
  if (!decoded.ok()) {
    Answer(context, decoded.status());
    return kj::READY_NOW;
  }
  Message message = *std::move(decoded);
  BeginOptions options{.first_check = absl::Milliseconds(p.getFirstCheckMs())};
  using Result = absl::StatusOr<TransactionId>;
  Producer* target = *producer;
  return OnWorker<Result>(
             server_->pool(),
             [target, message = std::move(message), options]() -> Result {
               auto txn = target->Begin(message, options);
               if (!txn.ok()) return txn.status();
               // Left to Commit/Rollback by id, or to the
               // check-back.
               return (*txn)->id();
             })
      .then([context](Result r) mutable {
        Answer(context, r.status());
        if (r.ok()) {
          context.getResults().setTransactionId(
              capnp::Data::Reader(r->bytes().data(), TransactionId::kSize));
        }
      });
}

absl::StatusOr<TransactionId> TxidFromWire(capnp::Data::Reader data) {
  if (data.size() != TransactionId::kSize) {
    return absl::InvalidArgumentError("a transaction id is 16 bytes");
  }
  std::array<uint8_t, TransactionId::kSize> bytes;
  std::memcpy(bytes.data(), data.begin(), bytes.size());
  return TransactionId::FromBytes(bytes);
}

kj::Promise<void> BrokerService::commit(CommitContext context) {
  absl::StatusOr<TransactionId> id =
      TxidFromWire(context.getParams().getTransactionId());
  if (!id.ok()) {
    Answer(context, id.status());
    return kj::READY_NOW;
  }
  Broker& broker = server_->broker();
  using Result = absl::StatusOr<SendResult>;
  return OnWorker<Result>(
             server_->pool(),
             [&broker, id = *id] { return broker.CommitTransaction(id); })
      .then([context](Result r) mutable {
        Answer(context, r.status());
        if (r.ok()) rpc::ToWire(*r, context.getResults().initResult());
      });
}

kj::Promise<void> BrokerService::rollback(RollbackContext context) {
  absl::StatusOr<TransactionId> id =
      TxidFromWire(context.getParams().getTransactionId());
  if (!id.ok()) {
    Answer(context, id.status());
    return kj::READY_NOW;
  }
  Broker& broker = server_->broker();
  return OnWorker<absl::Status>(
             server_->pool(),
             [&broker, id = *id] { return broker.RollbackTransaction(id); })
      .then([context](absl::Status s) mutable { Answer(context, s); });
}

kj::Promise<void> BrokerService::registerChecker(
    RegisterCheckerContext context) {
  auto p = context.getParams();
  const std::string group = Str(p.getGroup());
  const CheckPolicy policy = rpc::FromWire(p.getPolicy());
  const uint64_t id = server_->AddChecker(group, connection_, p.getChecker());
  ServerImpl* server = server_;
  return OnWorker<absl::Status>(server_->pool(),
                                [server, group, id, policy] {
                                  return server->ApplyChecker(group, id,
                                                              &policy);
                                })
      .then([context, server, group, id](absl::Status s) mutable {
        // Failed: forget this one (an earlier registration keeps working).
        // Applied: the older ones of the group are replaced.
        server->DropChecker(group, id, /*applied=*/s.ok());
        Answer(context, s);
      });
}

kj::Promise<void> BrokerService::unregisterChecker(
    UnregisterCheckerContext context) {
  const std::string group = Str(context.getParams().getGroup());
  std::optional<uint64_t> id = server_->CheckerOf(group, connection_);
  if (!id.has_value()) {
    Answer(context,
           absl::NotFoundError(absl::StrFormat(
               "this connection has no checker for group '%s'", group)));
    return kj::READY_NOW;
  }
  server_->DropChecker(group, *id, /*applied=*/false);
  ServerImpl* server = server_;
  return OnWorker<absl::Status>(server_->pool(),
                                [server, group, id = *id] {
                                  return server->ApplyChecker(group, id,
                                                              nullptr);
                                })
      .then([context](absl::Status s) mutable { Answer(context, s); });
}

// A remote consumer: one Consumer of the broker, its receives on a thread
// of its own (a receive waits), and copies of the messages it handed out
// that are not settled yet (acknowledged, given back, or past their
// invisible time): at most `max_in_flight`, so a slow client makes the
// server hold no more. Nothing holds the broker's batches (snapshots of its
// file) beyond the copy.
class SubscriptionService final : public rpc::Subscription::Server {
 public:
  SubscriptionService(ServerImpl* server, std::unique_ptr<Consumer> consumer,
                      std::string topic, uint32_t max_in_flight,
                      absl::Duration invisible)
      : server_(server),
        consumer_(std::move(consumer)),
        topic_(std::move(topic)),
        receiver_(std::make_shared<WorkerPool>(1)),
        max_in_flight_(max_in_flight),
        invisible_(invisible) {}

  ~SubscriptionService() noexcept {
    // The receive thread may still wait in Receive (up to its wait), and a
    // flush may still run: both hold the consumer (shared), and the thread
    // is joined on a worker, not here on the loop.
    in_flight_.clear();
    ready_.clear();
    server_->pool().Submit(
        [consumer = std::move(consumer_), receiver = std::move(receiver_)] {
          receiver->Stop();
        });
  }

  kj::Promise<void> receive(ReceiveContext context) override {
    auto p = context.getParams();
    Prune();
    if (!ready_.empty() || receiving_) {
      // Received before but not sent yet (a reply is capped in bytes), or
      // another receive is waiting: answer with what is ready.
      Reply(context, p.getMax());
      return kj::READY_NOW;
    }
    const size_t held = in_flight_.size();
    const size_t room = held >= max_in_flight_ ? 0 : max_in_flight_ - held;
    const size_t n = std::min<size_t>(p.getMax(), room);
    if (n == 0) {  // the window is full: settle some first
      Reply(context, 0);
      return kj::READY_NOW;
    }
    receiving_ = true;
    const absl::Duration wait =
        absl::Milliseconds(std::clamp<int64_t>(p.getWaitMs(), 0, 60000));
    // Copies of the messages, made on the receive thread: the broker's
    // batch (a snapshot of its file) is let go at once.
    using Result = absl::StatusOr<std::vector<Held>>;
    std::shared_ptr<Consumer> consumer = consumer_;
    const std::string* topic = &topic_;
    auto paf = kj::newPromiseAndCrossThreadFulfiller<Result>();
    auto fulfiller =
        std::make_shared<kj::Own<kj::CrossThreadPromiseFulfiller<Result>>>(
            kj::mv(paf.fulfiller));
    receiver_->Submit([fulfiller, consumer, topic, n, wait] {
      (*fulfiller)->fulfill(Copy(consumer->Receive(n, wait), *topic));
    });
    return paf.promise.then([this, context](Result r) mutable {
      receiving_ = false;
      if (!r.ok()) {
        Answer(context, r.status());
        return;
      }
      const absl::Time now = absl::Now();
      for (Held& held : *r) {
        held.handed_out = now;
        ready_.push_back(std::move(held));
      }
      Reply(context, context.getParams().getMax());
    });
  }

  kj::Promise<void> ack(AckContext context) override {
    absl::Status status;
    size_t unknown = 0;
    for (uint64_t handle : context.getParams().getHandles()) {
      auto it = in_flight_.find(handle);
      if (it == in_flight_.end()) {
        ++unknown;
        continue;
      }
      absl::Status s = consumer_->Ack(it->second.view);
      if (!s.ok() && status.ok()) status = s;
      in_flight_.erase(it);
    }
    if (status.ok() && unknown > 0) {
      status = absl::FailedPreconditionError(absl::StrFormat(
          "%d of the messages acknowledged were settled already or past "
          "their invisible time (they are delivered again)",
          unknown));
    }
    Answer(context, status);
    return kj::READY_NOW;
  }

  kj::Promise<void> ackOffset(AckOffsetContext context) override {
    auto p = context.getParams();
    Answer(context, consumer_->Ack(p.getQueue(), p.getOffset()));
    return kj::READY_NOW;
  }

  kj::Promise<void> reconsumeLater(ReconsumeLaterContext context) override {
    auto p = context.getParams();
    auto it = in_flight_.find(p.getHandle());
    if (it == in_flight_.end()) {
      Answer(context, Unknown(p.getHandle()));
      return kj::READY_NOW;
    }
    std::optional<absl::Duration> delay;
    if (p.getDelayMs() >= 0) {
      delay = absl::Milliseconds(std::min<int64_t>(p.getDelayMs(), kMaxMs));
    }
    Answer(context, consumer_->ReconsumeLater(it->second.view, delay));
    in_flight_.erase(it);
    return kj::READY_NOW;
  }

  kj::Promise<void> changeInvisibleDuration(
      ChangeInvisibleDurationContext context) override {
    auto p = context.getParams();
    auto it = in_flight_.find(p.getHandle());
    if (it == in_flight_.end()) {
      Answer(context, Unknown(p.getHandle()));
      return kj::READY_NOW;
    }
    const absl::Duration d =
        absl::Milliseconds(std::clamp<int64_t>(p.getDurationMs(), 0, kMaxMs));
    absl::Status s = consumer_->ChangeInvisibleDuration(it->second.view, d);
    if (s.ok()) it->second.handed_out = absl::Now() + d - invisible_;
    Answer(context, s);
    return kj::READY_NOW;
  }

  kj::Promise<void> flush(FlushContext context) override {
    std::shared_ptr<Consumer> consumer = consumer_;
    return OnWorker<absl::Status>(server_->pool(),
                                  [consumer] { return consumer->Flush(); })
        .then([context](absl::Status s) mutable { Answer(context, s); });
  }

  kj::Promise<void> committedOffset(CommittedOffsetContext context) override {
    absl::StatusOr<uint64_t> offset =
        consumer_->CommittedOffset(context.getParams().getQueue());
    Answer(context, offset.status());
    if (offset.ok()) context.getResults().setOffset(*offset);
    return kj::READY_NOW;
  }

 private:
  // A delivered message, copied: its record (8-byte aligned words), and a
  // view decoded from the copy for Ack and the like (they use where the
  // message is, never the broker's file).
  struct Held {
    std::vector<uint64_t> words;
    size_t size = 0;
    MessageView view;
    uint32_t reconsume_times = 0;
    uint64_t copy_offset = 0;
    absl::Time handed_out;
    std::string_view record() const {
      return std::string_view(reinterpret_cast<const char*>(words.data()),
                              size);
    }
  };

  // The longest delay or invisible duration accepted: a year.
  static constexpr int64_t kMaxMs = int64_t{366} * 24 * 3600 * 1000;
  // A reply carries at most this many record bytes (and at least one
  // message); the rest waits for the next receive.
  static constexpr size_t kMaxReplyBytes = size_t{8} << 20;

  // Receive thread: copies a batch out and lets it go.
  static absl::StatusOr<std::vector<Held>> Copy(
      absl::StatusOr<ReceivedBatch> batch, const std::string& topic) {
    if (!batch.ok()) return batch.status();
    std::vector<Held> out;
    for (const MessageView& view : *batch) {
      Held held;
      const std::string_view record = view.record();
      held.size = record.size();
      held.words.resize((record.size() + 7) / 8);
      std::memcpy(held.words.data(), record.data(), record.size());
      held.reconsume_times = view.reconsume_times();
      held.copy_offset = internal::MessageViewDecoder::CopyOffset(view);
      absl::Status decoded =
          held.copy_offset != internal::MessageViewDecoder::kNotACopy
              ? internal::MessageViewDecoder::DecodeCopy(
                    held.record(), topic, held.copy_offset, &held.view)
              : internal::MessageViewDecoder::Decode(held.record(), topic,
                                                     &held.view);
      if (!decoded.ok()) return decoded;
      if (held.copy_offset == internal::MessageViewDecoder::kNotACopy) {
        internal::MessageViewDecoder::SetReconsumeTimes(held.view,
                                                        held.reconsume_times);
      }
      out.push_back(std::move(held));
    }
    return out;
  }

  // Moves what is ready (up to `max` messages and kMaxReplyBytes) into the
  // reply and in flight.
  void Reply(ReceiveContext& context, uint32_t max) {
    Answer(context, absl::OkStatus());
    size_t count = 0, bytes = 0;
    while (count < ready_.size() && count < max &&
           (count == 0 || bytes + ready_[count].size <= kMaxReplyBytes)) {
      bytes += ready_[count].size;
      ++count;
    }
    auto list = context.getResults().initDeliveries(count);
    for (size_t i = 0; i < count; ++i) {
      Held& held = ready_.front();
      const uint64_t handle = ++next_handle_;
      list[i].setHandle(handle);
      list[i].setRecord(capnp::Data::Reader(
          reinterpret_cast<const kj::byte*>(held.words.data()), held.size));
      list[i].setReconsumeTimes(held.reconsume_times);
      list[i].setCopyOffset(held.copy_offset);
      in_flight_.emplace(handle, std::move(held));
      ready_.pop_front();
    }
  }

  static absl::Status Unknown(uint64_t handle) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "message handle %d is settled already or its invisible time ran out",
        handle));
  }

  // Forgets what is past its invisible time: the broker delivers it again
  // (maybe to another consumer), and it no longer counts in flight.
  void Prune() {
    const absl::Time cutoff = absl::Now() - invisible_;
    for (auto it = in_flight_.begin(); it != in_flight_.end();) {
      it = it->second.handed_out < cutoff ? in_flight_.erase(it) : ++it;
    }
    while (!ready_.empty() && ready_.front().handed_out < cutoff) {
      ready_.pop_front();
    }
  }

  ServerImpl* const server_;
  std::shared_ptr<Consumer> consumer_;
  const std::string topic_;  // the views' topic name
  std::shared_ptr<WorkerPool> receiver_;
  const uint32_t max_in_flight_;
  const absl::Duration invisible_;
  // Loop thread only.
  bool receiving_ = false;
  uint64_t next_handle_ = 0;
  std::deque<Held> ready_;  // received, not sent yet
  std::map<uint64_t, Held> in_flight_;
};

kj::Promise<void> BrokerService::subscribe(SubscribeContext context) {
  auto p = context.getParams();
  const std::string group = Str(p.getGroup());
  const std::string topic = Str(p.getTopic());
  const ConsumerOptions options = rpc::FromWire(p.getOptions());
  const uint32_t max_in_flight =
      std::clamp<uint32_t>(p.getOptions().getMaxInFlight(), 1, 65536);
  Broker& broker = server_->broker();
  using Result = absl::StatusOr<std::unique_ptr<Consumer>>;
  ServerImpl* server = server_;
  return OnWorker<Result>(server_->pool(),
                          [&broker, group, topic, options] {
                            return broker.CreateConsumer(group, topic, options);
                          })
      .then([context, server, max_in_flight,
             invisible = options.invisible_duration](Result r) mutable {
        Answer(context, r.status());
        if (!r.ok()) return;
        std::string name = (*r)->topic();
        context.getResults().setSubscription(kj::heap<SubscriptionService>(
            server, *std::move(r), std::move(name), max_in_flight, invisible));
      });
}

kj::Promise<void> BrokerService::sendEach(SendEachContext context) {
  auto p = context.getParams();
  const auto list = p.getMessages();
  if (list.size() > rpc::kMaxWireBatch) {
    return KJ_EXCEPTION(FAILED, "sendEach carries at most 10,000 messages");
  }
  absl::StatusOr<Producer*> producer =
      server_->ProducerFor("", p.getSelector());
  auto results = std::make_shared<std::vector<SendOutcome>>(list.size());
  std::vector<Message> messages;
  std::vector<size_t> where;  // of messages[j] in the call
  messages.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    // May throw on a malformed message: nothing started yet.
    absl::StatusOr<Message> decoded =
        producer.ok() ? rpc::DecodeWire(list[i])
                      : absl::StatusOr<Message>(producer.status());
    if (decoded.ok()) {
      messages.push_back(*std::move(decoded));
      where.push_back(i);
    } else {
      (*results)[i] = decoded.status();
    }
  }
  auto answer = [context, results]() mutable {
    auto outcomes = context.getResults().initOutcomes(results->size());
    for (size_t i = 0; i < results->size(); ++i) {
      const SendOutcome& r = (*results)[i];
      rpc::ToWire(r.status(), outcomes[i].initStatus());
      if (r.ok()) rpc::ToWire(*r, outcomes[i].initResult());
    }
  };
  if (messages.empty()) {
    answer();
    return kj::READY_NOW;
  }
  return server_->SendEach(**producer, std::move(messages))
      .then([results, where = std::move(where),
             answer](std::vector<SendOutcome> sent) mutable {
        for (size_t j = 0; j < sent.size(); ++j) {
          (*results)[where[j]] = std::move(sent[j]);
        }
        answer();
      });
}

}  // namespace

absl::StatusOr<std::unique_ptr<RpcServer>> RpcServer::Start(
    Broker& broker, const ServeOptions& options) {
  auto server = std::make_unique<ServerImpl>(broker, options);
  absl::Status s = server->Start();
  if (!s.ok()) return s;
  return std::unique_ptr<RpcServer>(std::move(server));
}

}  // namespace txmq
