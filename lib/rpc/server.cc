// RpcServer (include/txmq/rpc_server.h).
//
// One thread runs a KJ event loop with the listener and every connection.
// Broker calls never run on it: sends go through Producer::SendAsync, whose
// callback fulfils a cross-thread promise; calls that block (batches,
// transactions, topic changes) run on a small worker pool and fulfil theirs
// the same way. So the loop only moves bytes and never waits for a disk.

#include "txmq/rpc_server.h"

// GCC 12 reports the absl::Status inside kj's ExceptionOr<T> (a union in
// kj::Maybe) as maybe-uninitialized: a false positive of its union analysis.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.h>
#include <kj/async-io.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "log/message_view_decoder.h"
#include "rpc.capnp.h"
#include "rpc/convert.h"
#include "util/strings.h"

namespace txmq {
namespace {

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

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" ||
         absl::StartsWith(host, "127.");
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

 private:
  ServerImpl* const server_;
  const uint64_t connection_;
};

class GateService final : public rpc::Gate::Server {
 public:
  GateService(ServerImpl* server, bool token_required, uint64_t connection)
      : server_(server),
        token_required_(token_required),
        connection_(connection) {}
  kj::Promise<void> login(LoginContext context) override;

 private:
  ServerImpl* const server_;
  const bool token_required_;
  const uint64_t connection_;
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
  // Two registries: the loop's (`checkers_`, loop thread only: the client
  // capabilities) and the broker's (RegisterChecker, done on a worker under
  // `checkers_mu_`). A registration has an id; a RemoteChecker asks only
  // the capability of its own id, and a closing connection unregisters a
  // group only while the group is still its registration.

  // Loop thread. Records `checker` for `group` (replacing any) and returns
  // the registration's id.
  uint64_t AddChecker(const std::string& group, uint64_t connection,
                      rpc::TransactionChecker::Client checker) {
    const uint64_t id = ++next_registration_;
    checkers_.erase(group);
    checkers_.emplace(
        group, CheckerEntry{
                   id, connection,
                   kj::heap<rpc::TransactionChecker::Client>(kj::mv(checker))});
    return id;
  }

  // Worker thread: registers (or, with `checker` null, unregisters) with
  // the broker, unless a newer registration of the group came first.
  absl::Status ApplyChecker(const std::string& group, uint64_t id,
                            const CheckPolicy* policy, bool remove) {
    absl::MutexLock lock(&checkers_mu_);
    auto it = registered_.find(group);
    if (remove) {
      if (it == registered_.end() || it->second != id) return absl::OkStatus();
      registered_.erase(it);
      return broker_.UnregisterChecker(group);
    }
    if (it != registered_.end() && it->second > id) return absl::OkStatus();
    absl::Status s = broker_.RegisterChecker(
        group, std::make_shared<RemoteChecker>(this, group, id), *policy);
    if (s.ok()) registered_[group] = id;
    return s;
  }

  // Loop thread: the group's registration of `connection`, if it is current.
  std::optional<uint64_t> CheckerOf(const std::string& group,
                                    uint64_t connection) {
    auto it = checkers_.find(group);
    if (it == checkers_.end() || it->second.connection != connection) {
      return std::nullopt;
    }
    return it->second.id;
  }

  // Loop thread: forgets the capability of registration `id`.
  void DropChecker(const std::string& group, uint64_t id) {
    auto it = checkers_.find(group);
    if (it != checkers_.end() && it->second.id == id) checkers_.erase(it);
  }

  // A check-back thread of the broker: asks the client (through the loop).
  TransactionState CheckRemotely(const std::string& group, uint64_t id,
                                 const HalfMessage& half) {
    const kj::Executor* executor = nullptr;
    {
      absl::MutexLock lock(&mu_);
      executor = executor_;
    }
    if (executor == nullptr) return TransactionState::kUnknown;
    const std::string record(half.message.record());
    TransactionState state = TransactionState::kUnknown;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] {
                   state = executor->executeSync(
                       [&]() -> kj::Promise<TransactionState> {
                         auto it = checkers_.find(group);
                         if (it == checkers_.end() || it->second.id != id) {
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

  // Loop thread: a connection closed; its checkers stop answering.
  void ConnectionClosed(uint64_t connection) {
    for (auto it = checkers_.begin(); it != checkers_.end();) {
      if (it->second.connection != connection) {
        ++it;
        continue;
      }
      const std::string group = it->first;
      const uint64_t id = it->second.id;
      it = checkers_.erase(it);
      pool_.Submit([this, group, id] {
        ApplyChecker(group, id, nullptr, /*remove=*/true).IgnoreError();
      });
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
    const kj::Executor* executor = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      stopped_ = true;
      executor = executor_;
    }
    // The broker outlives this server: take the remote checkers back from
    // it first (a check in progress finishes through the loop, still
    // running).
    {
      absl::MutexLock lock(&checkers_mu_);
      for (const auto& [group, id] : registered_) {
        broker_.UnregisterChecker(group).IgnoreError();
      }
      registered_.clear();
    }
    // Not under mu_: the loop thread takes it (ProducerFor).
    if (executor != nullptr) {
      executor->executeSync([this] { stop_->fulfill(); });
    }
    if (thread_.joinable()) thread_.join();
    pool_.Stop();
    // Sends in flight complete into promises nobody waits for any more.
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](ServerImpl* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
          return s->sends_in_flight_ == 0;
        },
        this));
    if (!socket_path_.empty()) ::unlink(socket_path_.c_str());
  }

  const std::string& address() const override { return address_; }

  RpcServerStats Stats() const override {
    RpcServerStats stats;
    stats.connections = open_connections_.load(std::memory_order_relaxed);
    absl::MutexLock lock(&checkers_mu_);
    stats.remote_checkers = registered_.size();
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

  void SendStarted() {
    absl::MutexLock lock(&mu_);
    ++sends_in_flight_;
  }
  void SendDone() {
    absl::MutexLock lock(&mu_);
    --sends_in_flight_;
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
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] {
                   if (is_unix) ::unlink(socket_path_.c_str());  // a stale one
                   auto address = io.provider->getNetwork()
                                      .parseAddress(options_.listen)
                                      .wait(io.waitScope);
                   listener = address->listen();
                 })) {
      socket_path_.clear();
      started.set_value(absl::UnavailableError(
          absl::StrFormat("cannot listen on '%s': %s", options_.listen,
                          e->getDescription().cStr())));
      return;
    }
    if (is_unix) {
      if (::chmod(socket_path_.c_str(), options_.unix_mode) != 0) {
        const int err = errno;
        ::unlink(socket_path_.c_str());
        socket_path_.clear();
        started.set_value(absl::PermissionDeniedError(
            absl::StrFormat("cannot set the permissions of '%s': %s",
                            options_.listen, std::strerror(err))));
        return;
      }
      address_ = options_.listen;
    } else {
      address_ = absl::StrFormat("%s:%d", host, listener->getPort());
    }
    auto paf = kj::newPromiseAndFulfiller<void>();
    {
      absl::MutexLock lock(&mu_);
      executor_ = &kj::getCurrentThreadExecutor();
      stop_ = kj::mv(paf.fulfiller);
    }
    started.set_value(absl::OkStatus());

    const bool token_required = !options_.token.empty();
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
            const uint64_t id = ++next_connection_;
            open_connections_.fetch_add(1, std::memory_order_relaxed);
            capnp::Capability::Client gate =
                kj::heap<GateService>(this, token_required, id);
            auto connection = kj::heap<Connection>(kj::mv(stream), kj::mv(gate),
                                                   reader_options);
            auto done = connection->network.onDisconnect();
            connections.add(done.attach(kj::mv(connection)).then([this, id] {
              open_connections_.fetch_sub(1, std::memory_order_relaxed);
              ConnectionClosed(id);
            }));
            return accept();
          });
    };
    paf.promise.exclusiveJoin(accept()).wait(io.waitScope);
    {
      absl::MutexLock lock(&mu_);
      executor_ = nullptr;
    }
    checkers_.clear();
    // Leaving the scope destroys the connections (clients see a
    // disconnect) and the listener.
  }

  static bool SameUser(kj::AsyncIoStream& stream) {
    struct ucred cred;
    uint length = sizeof(cred);
    bool same = false;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] {
                   stream.getsockopt(SOL_SOCKET, SO_PEERCRED, &cred, &length);
                   same = cred.uid == ::geteuid() || ::geteuid() == 0;
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

  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  const kj::Executor* executor_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Loop thread only (through executor_).
  kj::Own<kj::PromiseFulfiller<void>> stop_;
  int sends_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::pair<std::string, int>, std::unique_ptr<Producer>> producers_
      ABSL_GUARDED_BY(mu_);

  // Loop thread only.
  kj::Timer* timer_ = nullptr;
  uint64_t next_connection_ = 0;
  struct CheckerEntry {
    uint64_t id;
    uint64_t connection;
    kj::Own<rpc::TransactionChecker::Client> cap;
  };
  std::map<std::string, CheckerEntry> checkers_;
  std::atomic<uint64_t> next_registration_{0};
  mutable absl::Mutex checkers_mu_;
  std::map<std::string, uint64_t> registered_ ABSL_GUARDED_BY(checkers_mu_);
  std::atomic<uint64_t> open_connections_{0};
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
  using Result = absl::StatusOr<SendResult>;
  auto paf = kj::newPromiseAndCrossThreadFulfiller<Result>();
  auto fulfiller =
      std::make_shared<kj::Own<kj::CrossThreadPromiseFulfiller<Result>>>(
          kj::mv(paf.fulfiller));
  ServerImpl* server = server_;
  server->SendStarted();
  (*producer)->SendAsync(rpc::FromWire(p.getMessage()),
                         [fulfiller, server](Result r) {
                           (*fulfiller)->fulfill(kj::mv(r));
                           *fulfiller = nullptr;  // before the count drops
                           server->SendDone();
                         });
  return paf.promise.then([context](Result r) mutable {
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
  std::vector<Message> messages;
  for (auto m : p.getMessages()) messages.push_back(rpc::FromWire(m));
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
  Message message = rpc::FromWire(p.getMessage());
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
                                  return server->ApplyChecker(
                                      group, id, &policy, /*remove=*/false);
                                })
      .then([context, server, group, id](absl::Status s) mutable {
        if (!s.ok()) server->DropChecker(group, id);
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
  server_->DropChecker(group, *id);
  ServerImpl* server = server_;
  return OnWorker<absl::Status>(server_->pool(),
                                [server, group, id = *id] {
                                  return server->ApplyChecker(
                                      group, id, nullptr, /*remove=*/true);
                                })
      .then([context](absl::Status s) mutable { Answer(context, s); });
}

// A remote consumer: one Consumer of the broker, its receives on a thread
// of its own (a receive waits), and the messages it handed out and that are
// not settled yet (acknowledged, given back, or past their invisible time),
// at most `max_in_flight`, with their batches kept alive until then.
class SubscriptionService final : public rpc::Subscription::Server {
 public:
  SubscriptionService(ServerImpl* server, std::unique_ptr<Consumer> consumer,
                      uint32_t max_in_flight, absl::Duration invisible)
      : server_(server),
        consumer_(std::move(consumer)),
        receiver_(std::make_unique<WorkerPool>(1)),
        max_in_flight_(max_in_flight),
        invisible_(invisible) {}

  ~SubscriptionService() noexcept {
    // Batches before their consumer; the receive thread may still wait in
    // Receive (up to its wait), so both end on a worker, not here on the
    // loop.
    in_flight_.clear();
    server_->pool().Submit(
        [consumer = std::shared_ptr<Consumer>(std::move(consumer_)),
         receiver = std::shared_ptr<WorkerPool>(std::move(receiver_))] {
          receiver->Stop();
        });
  }

  kj::Promise<void> receive(ReceiveContext context) override {
    auto p = context.getParams();
    Prune();
    const size_t room = in_flight_.size() >= max_in_flight_
                            ? 0
                            : max_in_flight_ - in_flight_.size();
    const size_t n = std::min<size_t>(p.getMax(), room);
    if (n == 0 || receiving_) {
      // Full (settle some first), or another receive is waiting.
      Answer(context, absl::OkStatus());
      context.getResults().initDeliveries(0);
      return kj::READY_NOW;
    }
    receiving_ = true;
    const absl::Duration wait =
        absl::Milliseconds(std::clamp<int64_t>(p.getWaitMs(), 0, 60000));
    using Result = absl::StatusOr<std::shared_ptr<ReceivedBatch>>;
    Consumer* consumer = consumer_.get();
    auto paf = kj::newPromiseAndCrossThreadFulfiller<Result>();
    auto fulfiller =
        std::make_shared<kj::Own<kj::CrossThreadPromiseFulfiller<Result>>>(
            kj::mv(paf.fulfiller));
    receiver_->Submit([fulfiller, consumer, n, wait] {
      absl::StatusOr<ReceivedBatch> batch = consumer->Receive(n, wait);
      if (!batch.ok()) {
        (*fulfiller)->fulfill(Result(batch.status()));
      } else {
        (*fulfiller)
            ->fulfill(
                Result(std::make_shared<ReceivedBatch>(*std::move(batch))));
      }
    });
    return paf.promise.then([this, context](Result r) mutable {
      receiving_ = false;
      Answer(context, r.status());
      if (!r.ok()) return;
      const std::shared_ptr<ReceivedBatch>& batch = *r;
      auto list = context.getResults().initDeliveries(batch->size());
      const absl::Time now = absl::Now();
      for (size_t i = 0; i < batch->size(); ++i) {
        const MessageView& view = (*batch)[i];
        const uint64_t handle = ++next_handle_;
        list[i].setHandle(handle);
        const std::string_view record = view.record();
        list[i].setRecord(capnp::Data::Reader(
            reinterpret_cast<const kj::byte*>(record.data()), record.size()));
        list[i].setReconsumeTimes(view.reconsume_times());
        list[i].setCopyOffset(internal::MessageViewDecoder::CopyOffset(view));
        in_flight_.emplace(handle, Held{batch, i, now});
      }
    });
  }

  kj::Promise<void> ack(AckContext context) override {
    absl::Status status;
    for (uint64_t handle : context.getParams().getHandles()) {
      auto it = in_flight_.find(handle);
      if (it == in_flight_.end()) continue;  // settled or timed out already
      absl::Status s = consumer_->Ack(it->second.view());
      if (!s.ok() && status.ok()) status = s;
      in_flight_.erase(it);
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
    if (p.getDelayMs() >= 0) delay = absl::Milliseconds(p.getDelayMs());
    Answer(context, consumer_->ReconsumeLater(it->second.view(), delay));
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
    const absl::Duration d = absl::Milliseconds(p.getDurationMs());
    absl::Status s = consumer_->ChangeInvisibleDuration(it->second.view(), d);
    if (s.ok()) it->second.handed_out = absl::Now() + d - invisible_;
    Answer(context, s);
    return kj::READY_NOW;
  }

  kj::Promise<void> flush(FlushContext context) override {
    Consumer* consumer = consumer_.get();
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
  struct Held {
    std::shared_ptr<ReceivedBatch> batch;
    size_t index;
    absl::Time handed_out;
    const MessageView& view() const { return (*batch)[index]; }
  };

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
  }

  ServerImpl* const server_;
  std::unique_ptr<Consumer> consumer_;
  std::unique_ptr<WorkerPool> receiver_;
  const uint32_t max_in_flight_;
  const absl::Duration invisible_;
  // Loop thread only.
  bool receiving_ = false;
  uint64_t next_handle_ = 0;
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
        context.getResults().setSubscription(kj::heap<SubscriptionService>(
            server, *std::move(r), max_in_flight, invisible));
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
