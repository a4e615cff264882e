// RemoteBroker (include/txmq/remote_broker.h).
//
// One thread runs a KJ event loop with the connection. A caller's thread
// hands its call to that loop (kj::Executor::executeSync; sends: a queue and
// an eventfd that wakes the loop) and waits for the answer; SendAsync's
// callbacks are posted to a CallbackRunner, never run on the loop, so that they
// may block (call Send) without stalling it.

#include "txmq/remote_broker.h"

// GCC 12 reports the absl::Status inside kj's ExceptionOr<T> (a union in
// kj::Maybe) as maybe-uninitialized: a false positive of its union analysis.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "broker/callback_runner.h"
#include "broker/producer_impl.h"
#include "log/message_view_decoder.h"
#include "rpc.capnp.h"
#include "rpc/convert.h"
#include "util/strings.h"

namespace txmq {
namespace {

kj::StringPtr Text(const std::string& s) {
  return kj::StringPtr(s.c_str(), s.size());
}

class RemoteImpl;

class RemoteTransaction final : public Transaction {
 public:
  RemoteTransaction(RemoteImpl* remote, TransactionId id)
      : remote_(remote), id_(id) {}
  const TransactionId& id() const override { return id_; }
  absl::StatusOr<SendResult> Commit() override;
  absl::Status Rollback() override;

 private:
  RemoteImpl* const remote_;
  const TransactionId id_;
};

class RemoteProducer final : public Producer {
 public:
  RemoteProducer(RemoteImpl* remote, const ProducerOptions& options)
      : remote_(remote), options_(options) {}

  absl::StatusOr<SendResult> Send(const Message& message) override;
  void SendAsync(const Message& message, SendCallback done) override;
  std::future<absl::StatusOr<SendResult>> SendAsync(
      const Message& message) override {
    auto promise = std::make_shared<std::promise<absl::StatusOr<SendResult>>>();
    std::future<absl::StatusOr<SendResult>> future = promise->get_future();
    SendAsync(message, [promise](absl::StatusOr<SendResult> r) {
      promise->set_value(std::move(r));
    });
    return future;
  }
  absl::StatusOr<std::vector<SendResult>> SendBatch(
      const std::vector<Message>& messages) override;
  absl::StatusOr<std::unique_ptr<Transaction>> Begin(
      const Message& message, const BeginOptions& options) override;
  absl::StatusOr<TransactionResult> SendInTransaction(
      const Message& message,
      absl::FunctionRef<TransactionState(const TransactionId&)>
          local_transaction,
      const BeginOptions& options) override;
  const ProducerOptions& options() const override { return options_; }

 private:
  RemoteImpl* const remote_;
  const ProducerOptions options_;
};

// A decoded copy of a delivered record: 8-byte aligned words, as
// MessageView wants them.
struct AlignedRecord {
  explicit AlignedRecord(capnp::Data::Reader data)
      : words((data.size() + 7) / 8), size(data.size()) {
    std::memcpy(words.data(), data.begin(), data.size());
  }
  std::string_view view() const {
    return std::string_view(reinterpret_cast<const char*>(words.data()), size);
  }
  std::vector<uint64_t> words;
  size_t size;
};

// The handles of the messages a consumer handed out, by the address of
// their record copy (unique while the batch lives). Shared by the consumer
// and its batches, which may end in either order.
struct HandleRegistry {
  absl::Mutex mu;
  absl::flat_hash_map<const char*, uint64_t> handles ABSL_GUARDED_BY(mu);
};

class RemoteBatch final : public ReceivedBatch::Resources {
 public:
  explicit RemoteBatch(std::shared_ptr<HandleRegistry> registry)
      : registry_(std::move(registry)) {}
  ~RemoteBatch() override {
    absl::MutexLock lock(&registry_->mu);
    for (const auto& r : records) registry_->handles.erase(r->view().data());
  }
  std::vector<std::unique_ptr<AlignedRecord>> records;
  std::vector<uint64_t> handles;
  const HandleRegistry* registry() const { return registry_.get(); }

 private:
  std::shared_ptr<HandleRegistry> registry_;
};

class RemoteImpl;

class RemoteConsumer final : public Consumer {
 public:
  RemoteConsumer(RemoteImpl* remote, std::string group, std::string topic,
                 kj::Own<rpc::Subscription::Client> subscription)
      : remote_(remote),
        group_(std::move(group)),
        topic_(std::move(topic)),
        subscription_(kj::mv(subscription)) {}
  ~RemoteConsumer() noexcept override;

  absl::StatusOr<ReceivedBatch> Receive(size_t max_messages,
                                        absl::Duration wait) override;
  absl::Status Ack(const MessageView& message) override;
  absl::Status Ack(const ReceivedBatch& batch) override;
  absl::Status Ack(uint32_t queue, uint64_t offset) override;
  absl::Status ReconsumeLater(const MessageView& message,
                              std::optional<absl::Duration> delay) override;
  absl::Status ChangeInvisibleDuration(const MessageView& message,
                                       absl::Duration duration) override;
  absl::Status Flush() override;
  absl::StatusOr<uint64_t> CommittedOffset(uint32_t queue) const override;
  const std::string& group() const override { return group_; }
  const std::string& topic() const override { return topic_; }

 private:
  absl::StatusOr<uint64_t> HandleOf(const MessageView& message) const;
  absl::Status AckHandles(const std::vector<uint64_t>& handles);

  RemoteImpl* const remote_;
  const std::string group_;
  const std::string topic_;
  // Used and destroyed on the loop thread only.
  mutable kj::Own<rpc::Subscription::Client> subscription_;
  std::shared_ptr<HandleRegistry> registry_ =
      std::make_shared<HandleRegistry>();
};

// A checker of this process, called by the server: each check runs the
// host's checker on the RemoteBroker's checker thread (never on the loop).
class CheckerService final : public rpc::TransactionChecker::Server {
 public:
  CheckerService(std::shared_ptr<TransactionChecker> checker,
                 CallbackRunner* runner)
      : checker_(std::move(checker)), runner_(runner) {}

  kj::Promise<void> check(CheckContext context) override {
    auto half = context.getParams().getHalf();
    auto record = std::make_shared<AlignedRecord>(half.getRecord());
    HalfMessage h;
    const capnp::Data::Reader id = half.getTransactionId();
    if (id.size() == TransactionId::kSize) {
      std::array<uint8_t, TransactionId::kSize> bytes;
      std::memcpy(bytes.data(), id.begin(), bytes.size());
      h.id = TransactionId::FromBytes(bytes);
    }
    h.group = std::string(half.getGroup().begin(), half.getGroup().size());
    h.begin_time = absl::FromUnixMillis(half.getBeginTimeMs());
    h.checks = half.getChecks();
    absl::StatusOr<MessageView> view = MessageView::FromRecord(record->view());
    if (!view.ok()) {
      context.getResults().setState(0);
      return kj::READY_NOW;
    }
    h.message = *view;
    auto paf = kj::newPromiseAndCrossThreadFulfiller<uint8_t>();
    auto fulfiller =
        std::make_shared<kj::Own<kj::CrossThreadPromiseFulfiller<uint8_t>>>(
            kj::mv(paf.fulfiller));
    runner_->Post([checker = checker_, record, h, fulfiller] {
      TransactionState state = TransactionState::kUnknown;
      try {
        state = checker->Check(h);
      } catch (...) {
        state = TransactionState::kUnknown;  // as in process
      }
      (*fulfiller)
          ->fulfill(state == TransactionState::kCommit     ? 1
                    : state == TransactionState::kRollback ? 2
                                                           : 0);
    });
    return paf.promise.then([context](uint8_t state) mutable {
      context.getResults().setState(state);
    });
  }

 private:
  const std::shared_ptr<TransactionChecker> checker_;
  CallbackRunner* const runner_;
};

class RemoteImpl final : public RemoteBroker {
 public:
  RemoteImpl(std::string address, ConnectOptions options)
      : address_(std::move(address)), options_(std::move(options)) {}

  ~RemoteImpl() noexcept override {
    kj::Own<const kj::Executor> executor;
    {
      absl::MutexLock lock(&mu_);
      if (executor_.get() != nullptr) executor = executor_->addRef();
    }
    if (executor.get() != nullptr) {
      executor->executeSync([this] { stop_->fulfill(); });
    }
    if (thread_.joinable()) thread_.join();
    // Callbacks still queued may call methods: they get UNAVAILABLE.
    callbacks_.Stop();
    checks_.Stop();
  }

  absl::Status Connect() {
    std::promise<absl::Status> connected;
    std::future<absl::Status> result = connected.get_future();
    thread_ = std::thread([this, &connected] { Run(connected); });
    absl::Status s = result.get();
    if (!s.ok()) thread_.join();
    return s;
  }

  // Runs `start` (which sends a request and returns a promise of T) on the
  // loop and waits for its answer; a call that gets no answer is
  // UNAVAILABLE.
  template <typename T, typename F>
  T Call(F&& start) {
    T out =
        absl::UnavailableError("the connection to the txmq server is closed");
    kj::Own<const kj::Executor> executor;
    {
      absl::MutexLock lock(&mu_);
      if (closed_ || executor_.get() == nullptr) return out;
      executor = executor_->addRef();
    }
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] {
                   out = executor->executeSync([&]() -> kj::Promise<T> {
                     return start().then([](T t) { return t; },
                                         [](kj::Exception&& e) -> T {
                                           return rpc::FromException(e);
                                         });
                   });
                 })) {
      out = rpc::FromException(*e);
    }
    return out;
  }

  absl::Status CreateTopic(std::string_view name,
                           const TopicOptions& options) override {
    const std::string n(name);
    const int64_t retention =
        options.retention == absl::InfiniteDuration()
            ? -1
            : absl::ToInt64Milliseconds(options.retention);
    return Call<absl::Status>([&] {
      auto req = broker_.createTopicRequest();
      req.setName(Text(n));
      req.setQueues(options.queues);
      req.setRetentionMs(retention == 0 ? 1 : retention);
      return req.send().then(
          [](auto r) { return rpc::FromWire(r.getStatus()); });
    });
  }

  absl::Status DeleteTopic(std::string_view name) override {
    const std::string n(name);
    return Call<absl::Status>([&] {
      auto req = broker_.deleteTopicRequest();
      req.setName(Text(n));
      return req.send().then(
          [](auto r) { return rpc::FromWire(r.getStatus()); });
    });
  }

  absl::StatusOr<std::vector<TopicInfo>> ListTopics() override {
    using Result = absl::StatusOr<std::vector<TopicInfo>>;
    return Call<Result>([&] {
      return broker_.listTopicsRequest().send().then([](auto r) -> Result {
        std::vector<TopicInfo> out;
        for (auto t : r.getTopics()) out.push_back(rpc::FromWire(t));
        return out;
      });
    });
  }

  absl::StatusOr<TopicInfo> DescribeTopic(std::string_view name) override {
    const std::string n(name);
    using Result = absl::StatusOr<TopicInfo>;
    return Call<Result>([&] {
      auto req = broker_.describeTopicRequest();
      req.setName(Text(n));
      return req.send().then([](auto r) -> Result {
        absl::Status s = rpc::FromWire(r.getStatus());
        if (!s.ok()) return s;
        return rpc::FromWire(r.getTopic());
      });
    });
  }

  absl::StatusOr<std::unique_ptr<Producer>> CreateProducer(
      const ProducerOptions& options) override {
    return std::unique_ptr<Producer>(new RemoteProducer(this, options));
  }

  absl::StatusOr<SendResult> CommitTransaction(
      const TransactionId& id) override {
    using Result = absl::StatusOr<SendResult>;
    return Call<Result>([&] {
      auto req = broker_.commitRequest();
      req.setTransactionId(
          capnp::Data::Reader(id.bytes().data(), TransactionId::kSize));
      return req.send().then([](auto r) -> Result {
        absl::Status s = rpc::FromWire(r.getStatus());
        if (!s.ok()) return s;
        return rpc::FromWire(r.getResult());
      });
    });
  }

  absl::Status RollbackTransaction(const TransactionId& id) override {
    return Call<absl::Status>([&] {
      auto req = broker_.rollbackRequest();
      req.setTransactionId(
          capnp::Data::Reader(id.bytes().data(), TransactionId::kSize));
      return req.send().then(
          [](auto r) { return rpc::FromWire(r.getStatus()); });
    });
  }

  absl::Status RegisterChecker(std::string_view group,
                               std::shared_ptr<TransactionChecker> checker,
                               const CheckPolicy& policy) override {
    if (checker == nullptr) {
      return absl::InvalidArgumentError("RegisterChecker needs a checker");
    }
    const std::string g(group);
    return Call<absl::Status>([&] {
      auto req = broker_.registerCheckerRequest();
      req.setGroup(Text(g));
      req.setChecker(kj::heap<CheckerService>(checker, &checks_));
      rpc::ToWire(policy, req.initPolicy());
      return req.send().then(
          [](auto r) { return rpc::FromWire(r.getStatus()); });
    });
  }

  absl::Status UnregisterChecker(std::string_view group) override {
    const std::string g(group);
    return Call<absl::Status>([&] {
      auto req = broker_.unregisterCheckerRequest();
      req.setGroup(Text(g));
      return req.send().then(
          [](auto r) { return rpc::FromWire(r.getStatus()); });
    });
  }

  absl::StatusOr<std::unique_ptr<Consumer>> CreateConsumer(
      std::string_view group, std::string_view topic,
      const ConsumerOptions& options) override {
    const std::string g(group), t(topic);
    using Result = absl::StatusOr<kj::Own<rpc::Subscription::Client>>;
    Result sub = Call<Result>([&] {
      auto req = broker_.subscribeRequest();
      req.setGroup(Text(g));
      req.setTopic(Text(t));
      auto o = req.initOptions();
      rpc::ToWire(options, o);
      o.setMaxInFlight(options_.max_in_flight);
      return req.send().then([](auto r) -> Result {
        absl::Status s = rpc::FromWire(r.getStatus());
        if (!s.ok()) return s;
        return kj::heap<rpc::Subscription::Client>(r.getSubscription());
      });
    });
    if (!sub.ok()) return sub.status();
    return std::unique_ptr<Consumer>(
        new RemoteConsumer(this, g, t, *std::move(sub)));
  }

  // The loop's executor, or null once the connection is closed.
  kj::Own<const kj::Executor> Executor() {
    absl::MutexLock lock(&mu_);
    if (closed_ || executor_.get() == nullptr) {
      return kj::Own<const kj::Executor>();
    }
    return executor_->addRef();
  }

  // Runs `fn` on the loop thread (for objects that live there). False when
  // the loop is gone.
  bool OnLoop(const std::function<void()>& fn) {
    kj::Own<const kj::Executor> executor = Executor();
    if (executor.get() == nullptr) return false;
    bool ran = false;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] {
                   executor->executeSync([&] {
                     fn();
                     ran = true;
                   });
                 })) {
      (void)e;
    }
    return ran;
  }

  // Producer calls.
  //
  // Sends from every thread meet in one queue; the loop drains it into
  // sendEach calls of up to kMaxPerCall messages, at most kMaxCallsInFlight
  // at a time, so that under load one round trip carries many threads'
  // messages (each still answered on its own). A lone send is one call, as
  // before.
  using SendDeliver = std::function<void(absl::StatusOr<SendResult>)>;

  absl::StatusOr<SendResult> Send(const Message& message,
                                  QueueSelector selector) {
    absl::Notification done;
    absl::StatusOr<SendResult> result;
    Enqueue(message, selector, [&](absl::StatusOr<SendResult> r) {
      result = std::move(r);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }

  void SendAsync(const Message& message, QueueSelector selector,
                 Producer::SendCallback done) {
    auto callback = std::make_shared<Producer::SendCallback>(std::move(done));
    Enqueue(message, selector, [this, callback](absl::StatusOr<SendResult> r) {
      callbacks_.Post([callback, r = std::move(r)] { (*callback)(r); });
    });
  }

 private:
  static constexpr size_t kMaxPerCall = 1000;
  static constexpr int kMaxCallsInFlight = 4;

  struct QueuedSend {
    Message message;
    QueueSelector selector;
    SendDeliver deliver;
  };

  static absl::Status Closed() {
    return absl::UnavailableError(
        "the connection to the txmq server is closed");
  }

  // Queues a send and, unless a drain is due already, wakes the loop
  // through kick_fd_ (an eventfd the loop watches): the caller does not
  // wait for the loop to run, as kj::Executor::executeSync would make it.
  void Enqueue(const Message& message, QueueSelector selector,
               SendDeliver deliver) {
    {
      absl::MutexLock lock(&send_mu_);
      send_queue_.push_back(QueuedSend{message, selector, std::move(deliver)});
      if (kick_pending_ || calls_in_flight_ >= kMaxCallsInFlight) return;
      if (kick_fd_ >= 0) {
        const uint64_t one = 1;
        // Fails only when the counter would overflow: a wake-up is due then.
        (void)!::write(kick_fd_, &one, sizeof(one));
        kick_pending_ = true;
        return;
      }
    }
    FailQueued(Closed());  // the loop is gone (or not there yet)
  }

  // Loop thread: drains kick_fd_, then the send queue, and again whenever
  // the eventfd becomes readable (edge-triggered, so read until empty).
  kj::Promise<void> WatchKicks(int fd, kj::UnixEventPort::FdObserver& kicks) {
    uint64_t count;
    while (::read(fd, &count, sizeof(count)) > 0) {
    }
    Drain();
    return kicks.whenBecomesReadable().then(
        [this, fd, &kicks] { return WatchKicks(fd, kicks); });
  }

  // Answers everything queued with `status` (the connection is gone).
  void FailQueued(const absl::Status& status) {
    std::deque<QueuedSend> queued;
    {
      absl::MutexLock lock(&send_mu_);
      queued.swap(send_queue_);
      kick_pending_ = false;
    }
    for (QueuedSend& q : queued) q.deliver(status);
  }

  // Loop thread: turns the queue into sendEach calls.
  void Drain() {
    while (true) {
      auto batch = std::make_shared<std::vector<QueuedSend>>();
      QueueSelector selector;
      {
        absl::MutexLock lock(&send_mu_);
        kick_pending_ = false;
        if (send_queue_.empty() || calls_in_flight_ >= kMaxCallsInFlight ||
            tasks_ == nullptr) {
          return;
        }
        selector = send_queue_.front().selector;
        while (!send_queue_.empty() && batch->size() < kMaxPerCall &&
               send_queue_.front().selector == selector) {
          batch->push_back(std::move(send_queue_.front()));
          send_queue_.pop_front();
        }
        ++calls_in_flight_;
      }
      auto req = broker_.sendEachRequest();
      req.setSelector(rpc::ToWire(selector));
      auto list = req.initMessages(batch->size());
      for (size_t i = 0; i < batch->size(); ++i) {
        rpc::ToWire((*batch)[i].message, list[i]);
      }
      tasks_->add(req.send()
                      .then(
                          [batch](auto r) {
                            auto outcomes = r.getOutcomes();
                            for (size_t i = 0; i < batch->size(); ++i) {
                              if (i >= outcomes.size()) {
                                (*batch)[i].deliver(absl::DataLossError(
                                    "the txmq server answered fewer sends"));
                                continue;
                              }
                              absl::Status s =
                                  rpc::FromWire(outcomes[i].getStatus());
                              if (s.ok()) {
                                (*batch)[i].deliver(
                                    rpc::FromWire(outcomes[i].getResult()));
                              } else {
                                (*batch)[i].deliver(s);
                              }
                            }
                          },
                          [batch](kj::Exception&& e) {
                            const absl::Status s = rpc::FromException(e);
                            for (QueuedSend& q : *batch) q.deliver(s);
                          })
                      .then([this] {
                        {
                          absl::MutexLock lock(&send_mu_);
                          --calls_in_flight_;
                        }
                        Drain();  // what queued meanwhile
                      }));
    }
  }

 public:
  absl::StatusOr<std::vector<SendResult>> SendBatch(
      const std::vector<Message>& messages, QueueSelector selector) {
    using Result = absl::StatusOr<std::vector<SendResult>>;
    return Call<Result>([&] {
      auto req = broker_.sendBatchRequest();
      req.setSelector(rpc::ToWire(selector));
      auto list = req.initMessages(messages.size());
      for (size_t i = 0; i < messages.size(); ++i) {
        rpc::ToWire(messages[i], list[i]);
      }
      return req.send().then([](auto r) -> Result {
        absl::Status s = rpc::FromWire(r.getStatus());
        if (!s.ok()) return s;
        std::vector<SendResult> out;
        for (auto x : r.getResults()) out.push_back(rpc::FromWire(x));
        return out;
      });
    });
  }

  absl::StatusOr<TransactionId> Begin(const std::string& group,
                                      const Message& message,
                                      QueueSelector selector,
                                      const BeginOptions& options) {
    using Result = absl::StatusOr<TransactionId>;
    return Call<Result>([&] {
      auto req = broker_.beginRequest();
      req.setGroup(Text(group));
      rpc::ToWire(message, req.initMessage());
      req.setSelector(rpc::ToWire(selector));
      req.setFirstCheckMs(absl::ToInt64Milliseconds(options.first_check));
      return req.send().then([](auto r) -> Result {
        absl::Status s = rpc::FromWire(r.getStatus());
        if (!s.ok()) return s;
        const capnp::Data::Reader id = r.getTransactionId();
        if (id.size() != TransactionId::kSize) {
          return absl::DataLossError("the server sent a malformed id");
        }
        std::array<uint8_t, TransactionId::kSize> bytes;
        std::memcpy(bytes.data(), id.begin(), bytes.size());
        return TransactionId::FromBytes(bytes);
      });
    });
  }

 private:
  class ErrorHandler final : public kj::TaskSet::ErrorHandler {
   public:
    void taskFailed(kj::Exception&&) override {}  // reported per call
  };

  void Run(std::promise<absl::Status>& connected) {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    ErrorHandler errors;
    kj::TaskSet tasks(errors);
    kj::Own<kj::AsyncIoStream> stream;
    kj::Own<capnp::TwoPartyVatNetwork> network;
    kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc_system;
    absl::Status login = absl::OkStatus();
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] {
                   auto connect = io.provider->getNetwork()
                                      .parseAddress(Text(address_))
                                      .then([](kj::Own<kj::NetworkAddress> a) {
                                        return a->connect().attach(kj::mv(a));
                                      });
                   stream = io.provider->getTimer()
                                .timeoutAfter(absl::ToInt64Milliseconds(
                                                  options_.connect_timeout) *
                                                  kj::MILLISECONDS,
                                              kj::mv(connect))
                                .wait(io.waitScope);
                   // Replies may carry up to 8 MiB of messages plus one of
                   // any size the broker allows: read up to 1 GiB.
                   capnp::ReaderOptions reader_options;
                   reader_options.traversalLimitInWords = (size_t{1} << 30) / 8;
                   network = kj::heap<capnp::TwoPartyVatNetwork>(
                       *stream, capnp::rpc::twoparty::Side::CLIENT,
                       reader_options);
                   rpc_system =
                       kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(
                           capnp::makeRpcClient(*network));
                   capnp::word scratch[4];
                   memset(scratch, 0, sizeof(scratch));
                   capnp::MallocMessageBuilder vat(scratch);
                   auto server_id = vat.getRoot<capnp::rpc::twoparty::VatId>();
                   server_id.setSide(capnp::rpc::twoparty::Side::SERVER);
                   rpc::Gate::Client gate =
                       rpc_system->bootstrap(server_id).castAs<rpc::Gate>();
                   auto req = gate.loginRequest();
                   req.setToken(Text(options_.token));
                   auto response =
                       io.provider->getTimer()
                           .timeoutAfter(absl::ToInt64Milliseconds(
                                             options_.connect_timeout) *
                                             kj::MILLISECONDS,
                                         req.send())
                           .wait(io.waitScope);
                   login = rpc::FromWire(response.getStatus());
                   if (login.ok()) broker_ = response.getBroker();
                 })) {
      connected.set_value(absl::UnavailableError(
          absl::StrFormat("cannot reach a txmq server at '%s': %s", address_,
                          e->getDescription().cStr())));
      return;
    }
    if (!login.ok()) {
      connected.set_value(login);
      return;
    }
    auto paf = kj::newPromiseAndFulfiller<void>();
    stop_ = kj::mv(paf.fulfiller);
    tasks_ = &tasks;
    const int kick_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (kick_fd < 0) {
      connected.set_value(absl::ResourceExhaustedError(absl::StrFormat(
          "cannot create an eventfd: %s", std::strerror(errno))));
      return;
    }
    auto kicks = kj::heap<kj::UnixEventPort::FdObserver>(
        io.unixEventPort, kick_fd, kj::UnixEventPort::FdObserver::OBSERVE_READ);
    kj::Promise<void> watch =
        WatchKicks(kick_fd, *kicks).eagerlyEvaluate(nullptr);
    {
      absl::MutexLock lock(&send_mu_);
      kick_fd_ = kick_fd;
    }
    {
      absl::MutexLock lock(&mu_);
      executor_ = kj::getCurrentThreadExecutor().addRef();
    }
    connected.set_value(absl::OkStatus());
    paf.promise.wait(io.waitScope);
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;  // calls from now on get UNAVAILABLE at once
    }
    {
      absl::MutexLock lock(&send_mu_);
      kick_fd_ = -1;  // sends from now on fail at once
    }
    watch = kj::READY_NOW;  // cancels the watch
    kicks = nullptr;
    ::close(kick_fd);
    // Disconnect, then let what was in flight fail (SendAsync callbacks
    // get UNAVAILABLE, as promised: each is called once).
    broker_ = nullptr;
    rpc_system = nullptr;
    network = nullptr;
    stream = nullptr;
    tasks.onEmpty().wait(io.waitScope);
    FailQueued(Closed());  // queued, never sent
    tasks_ = nullptr;
    stop_ = nullptr;
    {
      absl::MutexLock lock(&mu_);
      executor_ = nullptr;
    }
  }

  const std::string address_;
  const ConnectOptions options_;
  std::thread thread_;
  CallbackRunner callbacks_;
  CallbackRunner checks_;  // the host's checkers run here
  absl::Mutex send_mu_;
  std::deque<QueuedSend> send_queue_ ABSL_GUARDED_BY(send_mu_);
  int calls_in_flight_ ABSL_GUARDED_BY(send_mu_) = 0;
  bool kick_pending_ ABSL_GUARDED_BY(send_mu_) = false;
  // The loop's eventfd (Enqueue), -1 while there is no loop.
  int kick_fd_ ABSL_GUARDED_BY(send_mu_) = -1;
  absl::Mutex mu_;
  kj::Own<const kj::Executor> executor_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // Loop thread only.
  kj::Own<kj::PromiseFulfiller<void>> stop_;
  kj::TaskSet* tasks_ = nullptr;
  rpc::Broker::Client broker_ = nullptr;
};

RemoteConsumer::~RemoteConsumer() noexcept {
  // A capability is destroyed on its loop. With the loop gone (the
  // RemoteBroker was destroyed first, against its rules) it is left
  // behind rather than destroyed on the wrong thread.
  if (!remote_->OnLoop([this] { subscription_ = nullptr; })) {
    new kj::Own<rpc::Subscription::Client>(kj::mv(subscription_));
  }
}

absl::StatusOr<ReceivedBatch> RemoteConsumer::Receive(size_t max_messages,
                                                      absl::Duration wait) {
  if (max_messages == 0) {
    return absl::InvalidArgumentError("Receive needs max_messages >= 1");
  }
  using Result = absl::StatusOr<ReceivedBatch>;
  const int64_t wait_ms =
      std::clamp<int64_t>(absl::ToInt64Milliseconds(wait), 0, 60000);
  return remote_->Call<Result>([&] {
    auto req = subscription_->receiveRequest();
    req.setMax(static_cast<uint32_t>(std::min<size_t>(max_messages, 1 << 20)));
    req.setWaitMs(wait_ms);
    return req.send().then([this](auto r) -> Result {
      absl::Status s = rpc::FromWire(r.getStatus());
      if (!s.ok()) return s;
      auto batch = std::make_unique<RemoteBatch>(registry_);
      std::vector<MessageView> views;
      for (auto d : r.getDeliveries()) {
        auto record = std::make_unique<AlignedRecord>(d.getRecord());
        MessageView view;
        absl::Status decoded =
            d.getCopyOffset() != internal::MessageViewDecoder::kNotACopy
                ? internal::MessageViewDecoder::DecodeCopy(
                      record->view(), topic_, d.getCopyOffset(), &view)
                : internal::MessageViewDecoder::Decode(record->view(), topic_,
                                                       &view);
        if (!decoded.ok()) return decoded;
        if (d.getCopyOffset() == internal::MessageViewDecoder::kNotACopy) {
          internal::MessageViewDecoder::SetReconsumeTimes(
              view, d.getReconsumeTimes());
        }
        views.push_back(view);
        batch->handles.push_back(d.getHandle());
        batch->records.push_back(std::move(record));
      }
      {
        absl::MutexLock lock(&registry_->mu);
        for (size_t i = 0; i < batch->records.size(); ++i) {
          registry_->handles[batch->records[i]->view().data()] =
              batch->handles[i];
        }
      }
      return ReceivedBatch(std::move(views), std::move(batch));
    });
  });
}

absl::StatusOr<uint64_t> RemoteConsumer::HandleOf(
    const MessageView& message) const {
  absl::MutexLock lock(&registry_->mu);
  auto it = registry_->handles.find(message.record().data());
  if (it == registry_->handles.end()) {
    return absl::InvalidArgumentError(
        "the message was not handed out by this consumer, or its batch is "
        "gone");
  }
  return it->second;
}

absl::Status RemoteConsumer::AckHandles(const std::vector<uint64_t>& handles) {
  return remote_->Call<absl::Status>([&] {
    auto req = subscription_->ackRequest();
    auto list = req.initHandles(handles.size());
    for (size_t i = 0; i < handles.size(); ++i) list.set(i, handles[i]);
    return req.send().then([](auto r) { return rpc::FromWire(r.getStatus()); });
  });
}

absl::Status RemoteConsumer::Ack(const MessageView& message) {
  absl::StatusOr<uint64_t> handle = HandleOf(message);
  if (!handle.ok()) return handle.status();
  return AckHandles({*handle});
}

absl::Status RemoteConsumer::Ack(const ReceivedBatch& batch) {
  if (const auto* remote = dynamic_cast<const RemoteBatch*>(batch.resources());
      remote != nullptr && remote->registry() == registry_.get()) {
    if (remote->handles.empty()) return absl::OkStatus();
    return AckHandles(remote->handles);
  }
  for (const MessageView& view : batch) {
    if (absl::Status s = Ack(view); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status RemoteConsumer::Ack(uint32_t queue, uint64_t offset) {
  return remote_->Call<absl::Status>([&] {
    auto req = subscription_->ackOffsetRequest();
    req.setQueue(queue);
    req.setOffset(offset);
    return req.send().then([](auto r) { return rpc::FromWire(r.getStatus()); });
  });
}

absl::Status RemoteConsumer::ReconsumeLater(
    const MessageView& message, std::optional<absl::Duration> delay) {
  if (delay.has_value() && *delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ReconsumeLater needs a delay >= 0");
  }
  absl::StatusOr<uint64_t> handle = HandleOf(message);
  if (!handle.ok()) return handle.status();
  return remote_->Call<absl::Status>([&] {
    auto req = subscription_->reconsumeLaterRequest();
    req.setHandle(*handle);
    req.setDelayMs(delay.has_value() ? absl::ToInt64Milliseconds(*delay) : -1);
    return req.send().then([](auto r) { return rpc::FromWire(r.getStatus()); });
  });
}

absl::Status RemoteConsumer::ChangeInvisibleDuration(const MessageView& message,
                                                     absl::Duration duration) {
  absl::StatusOr<uint64_t> handle = HandleOf(message);
  if (!handle.ok()) return handle.status();
  return remote_->Call<absl::Status>([&] {
    auto req = subscription_->changeInvisibleDurationRequest();
    req.setHandle(*handle);
    req.setDurationMs(absl::ToInt64Milliseconds(duration));
    return req.send().then([](auto r) { return rpc::FromWire(r.getStatus()); });
  });
}

absl::Status RemoteConsumer::Flush() {
  return remote_->Call<absl::Status>([&] {
    return subscription_->flushRequest().send().then(
        [](auto r) { return rpc::FromWire(r.getStatus()); });
  });
}

absl::StatusOr<uint64_t> RemoteConsumer::CommittedOffset(uint32_t queue) const {
  using Result = absl::StatusOr<uint64_t>;
  return remote_->Call<Result>([&] {
    auto req = subscription_->committedOffsetRequest();
    req.setQueue(queue);
    return req.send().then([](auto r) -> Result {
      absl::Status s = rpc::FromWire(r.getStatus());
      if (!s.ok()) return s;
      return r.getOffset();
    });
  });
}

absl::StatusOr<SendResult> RemoteTransaction::Commit() {
  return remote_->CommitTransaction(id_);
}

absl::Status RemoteTransaction::Rollback() {
  return remote_->RollbackTransaction(id_);
}

absl::StatusOr<SendResult> RemoteProducer::Send(const Message& message) {
  return remote_->Send(message, options_.selector);
}

void RemoteProducer::SendAsync(const Message& message, SendCallback done) {
  remote_->SendAsync(message, options_.selector, std::move(done));
}

absl::StatusOr<std::vector<SendResult>> RemoteProducer::SendBatch(
    const std::vector<Message>& messages) {
  return remote_->SendBatch(messages, options_.selector);
}

absl::StatusOr<std::unique_ptr<Transaction>> RemoteProducer::Begin(
    const Message& message, const BeginOptions& options) {
  if (options_.group.empty()) {
    return absl::FailedPreconditionError(
        "Begin needs a producer group: create the producer with "
        "ProducerOptions::group, and register the group's checker");
  }
  absl::StatusOr<TransactionId> id =
      remote_->Begin(options_.group, message, options_.selector, options);
  if (!id.ok()) return id.status();
  return std::unique_ptr<Transaction>(new RemoteTransaction(remote_, *id));
}

absl::StatusOr<TransactionResult> RemoteProducer::SendInTransaction(
    const Message& message,
    absl::FunctionRef<TransactionState(const TransactionId&)> local_transaction,
    const BeginOptions& options) {
  return SendInTransactionOf(*this, message, local_transaction, options);
}

}  // namespace

absl::StatusOr<std::unique_ptr<RemoteBroker>> RemoteBroker::Connect(
    std::string_view address, const ConnectOptions& options) {
  auto remote = std::make_unique<RemoteImpl>(std::string(address), options);
  absl::Status s = remote->Connect();
  if (!s.ok()) return s;
  return std::unique_ptr<RemoteBroker>(std::move(remote));
}

}  // namespace txmq
