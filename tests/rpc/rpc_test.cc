// The RPC front: RpcServer serving a Broker, RemoteBroker using it, over a
// Unix socket and loopback TCP, in one process.

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "broker_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/remote_broker.h"
#include "txmq/rpc_server.h"

namespace txmq::testing {
namespace {

using ::testing::HasSubstr;

class RpcTest : public BrokerFixture {
 protected:
  void SetUp() override {
    producer_options_.group = "orders-tx";
    BrokerFixture::SetUp();
    ServeOptions serve{.listen = "unix:" + tmp_.Sub("mq.sock")};
    auto server = RpcServer::Start(*broker_, serve);
    TXMQ_ASSERT_OK(server);
    server_ = *std::move(server);
    auto remote = RemoteBroker::Connect(server_->address());
    TXMQ_ASSERT_OK(remote);
    remote_ = *std::move(remote);
  }

  void TearDown() override {
    remote_.reset();
    if (server_ != nullptr) server_->Stop();
  }

  // The bodies of `topic_` as a fresh group sees them now.
  std::vector<std::string> Bodies() {
    auto consumer =
        broker_->CreateConsumer("check-" + std::to_string(++groups_), topic_);
    EXPECT_TRUE(consumer.ok());
    std::vector<std::string> out;
    auto batch = (*consumer)->Receive(1000, absl::ZeroDuration());
    EXPECT_TRUE(batch.ok());
    for (const MessageView& m : *batch) out.emplace_back(m.body());
    std::sort(out.begin(), out.end());
    return out;
  }

  // Messages stored in `topic_` (without making a group).
  uint64_t Count() { return broker_->DescribeTopic(topic_)->message_count(); }

  std::unique_ptr<RpcServer> server_;
  std::unique_ptr<RemoteBroker> remote_;
  int groups_ = 0;
};

TEST_F(RpcTest, TopicsThroughTheServer) {
  TXMQ_ASSERT_OK(remote_->CreateTopic(
      "payments", {.queues = 3, .retention = absl::InfiniteDuration()}));
  auto info = broker_->DescribeTopic("payments");
  TXMQ_ASSERT_OK(info);
  EXPECT_EQ(info->queue_count, 3u);
  EXPECT_EQ(info->retention, absl::InfiniteDuration());
  auto remote_info = remote_->DescribeTopic("payments");
  TXMQ_ASSERT_OK(remote_info);
  EXPECT_EQ(remote_info->queue_count, 3u);
  EXPECT_EQ(remote_info->create_time, info->create_time);
  auto topics = remote_->ListTopics();
  TXMQ_ASSERT_OK(topics);
  EXPECT_EQ(topics->size(), broker_->ListTopics().size());
  EXPECT_TRUE(absl::IsAlreadyExists(remote_->CreateTopic("payments")));
  EXPECT_TRUE(absl::IsInvalidArgument(remote_->CreateTopic("bad name")));
  TXMQ_ASSERT_OK(remote_->DeleteTopic("payments"));
  EXPECT_TRUE(absl::IsNotFound(remote_->DescribeTopic("payments").status()));
  EXPECT_TRUE(absl::IsNotFound(remote_->DeleteTopic("payments")));
}

TEST_F(RpcTest, SendsAreStoredWithEveryField) {
  auto producer = remote_->CreateProducer();
  TXMQ_ASSERT_OK(producer);
  Message m{.topic = topic_,
            .key = "o-1",
            .tags = {"paid", "vip"},
            .properties = {{"channel", "web"}},
            .body = std::string("bin\0ary", 7)};
  auto sent = (*producer)->Send(m);
  TXMQ_ASSERT_OK(sent);
  EXPECT_FALSE(sent->id.IsZero());
  auto consumer = broker_->CreateConsumer("g", topic_);
  auto batch = (*consumer)->Receive(10, absl::Seconds(5));
  TXMQ_ASSERT_OK(batch);
  ASSERT_EQ(batch->size(), 1u);
  const MessageView& v = (*batch)[0];
  EXPECT_EQ(v.id(), sent->id);
  EXPECT_EQ(v.queue(), sent->queue);
  EXPECT_EQ(v.offset(), sent->offset);
  EXPECT_EQ(v.key(), "o-1");
  EXPECT_EQ(v.body(), m.body);
  EXPECT_EQ(v.tags(), (std::vector<std::string_view>{"paid", "vip"}));
  EXPECT_EQ(v.property("channel"), "web");
}

TEST_F(RpcTest, BatchesAsyncSendsAndErrors) {
  auto producer = remote_->CreateProducer();
  TXMQ_ASSERT_OK(producer);
  auto results = (*producer)->SendBatch(
      {{.topic = topic_, .body = "a"}, {.topic = topic_, .body = "b"}});
  TXMQ_ASSERT_OK(results);
  EXPECT_EQ(results->size(), 2u);
  // All or nothing, as in process.
  EXPECT_TRUE(absl::IsNotFound((*producer)
                                   ->SendBatch({{.topic = topic_, .body = "c"},
                                                {.topic = "nope", .body = "d"}})
                                   .status()));
  std::atomic<int> done{0};
  absl::Notification all;
  for (int i = 0; i < 50; ++i) {
    (*producer)->SendAsync(
        {.topic = topic_, .body = "x" + std::to_string(100 + i)},
        [&](absl::StatusOr<SendResult> r) {
          EXPECT_TRUE(r.ok()) << r.status();
          if (++done == 50) all.Notify();
        });
  }
  ASSERT_TRUE(all.WaitForNotificationWithTimeout(absl::Seconds(20)));
  auto future = (*producer)->SendAsync({.topic = "nope", .body = "e"});
  EXPECT_TRUE(absl::IsNotFound(future.get().status()));
  EXPECT_TRUE(absl::IsNotFound((*producer)->Send({.topic = "nope"}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      (*producer)
          ->Send({.topic = topic_, .key = std::string(2000, 'k')})
          .status()));
  EXPECT_EQ(Bodies().size(), 52u);
}

TEST_F(RpcTest, TransactionsCommitAndRollBackByRemote) {
  auto producer = remote_->CreateProducer({.group = "orders-tx"});
  TXMQ_ASSERT_OK(producer);
  auto committed = (*producer)->Begin({.topic = topic_, .body = "yes"});
  TXMQ_ASSERT_OK(committed);
  auto rolled = (*producer)->Begin({.topic = topic_, .body = "no"});
  TXMQ_ASSERT_OK(rolled);
  EXPECT_EQ(broker_->ListTransactions()->size(), 2u);
  EXPECT_TRUE(Bodies().empty());  // half messages are invisible
  TXMQ_ASSERT_OK((*committed)->Commit());
  TXMQ_ASSERT_OK((*rolled)->Rollback());
  // Idempotent, and conflicts refused, as in process.
  TXMQ_EXPECT_OK((*committed)->Commit());
  EXPECT_TRUE(absl::IsFailedPrecondition((*rolled)->Commit().status()));
  EXPECT_TRUE(Eventually([&] { return Count() == 1; }));
  EXPECT_EQ(Bodies(), std::vector<std::string>{"yes"});
  // SendInTransaction runs the local transaction between Begin and Commit.
  TransactionId seen;
  auto result = (*producer)->SendInTransaction(
      {.topic = topic_, .body = "local"}, [&](const TransactionId& id) {
        seen = id;
        return TransactionState::kCommit;
      });
  TXMQ_ASSERT_OK(result);
  EXPECT_EQ(result->id, seen);
  EXPECT_TRUE(result->sent.has_value());
  // No group: refused before anything is stored.
  auto plain = remote_->CreateProducer();
  EXPECT_TRUE(absl::IsFailedPrecondition(
      (*plain)->Begin({.topic = topic_, .body = "x"}).status()));
}

TEST_F(RpcTest, AHalfMessageLeftByTheClientIsResolvedByTheCheckBack) {
  class Commits : public TransactionChecker {
   public:
    TransactionState Check(const HalfMessage&) override {
      return TransactionState::kCommit;
    }
  };
  CheckPolicy policy;
  policy.transaction_timeout = absl::Milliseconds(50);
  policy.first_interval = absl::Milliseconds(50);
  TXMQ_ASSERT_OK(broker_->RegisterChecker("orders-tx",
                                          std::make_shared<Commits>(), policy));
  {
    auto producer = remote_->CreateProducer({.group = "orders-tx"});
    auto txn = (*producer)->Begin({.topic = topic_, .body = "orphan"},
                                  {.first_check = absl::Milliseconds(50)});
    TXMQ_ASSERT_OK(txn);
    producer->reset();
    remote_.reset();  // the client goes away between Begin and Commit
  }
  clock_->Advance(absl::Seconds(1));  // past the first check
  EXPECT_TRUE(Eventually([&] { return Count() == 1; }));
  EXPECT_EQ(Bodies(), std::vector<std::string>{"orphan"});
}

TEST_F(RpcTest, RemoteConsumersReceiveAndAcknowledge) {
  for (int i = 0; i < 10; ++i) {
    TXMQ_ASSERT_OK(producer_->Send(
        {.topic = topic_, .key = "k", .body = "m" + std::to_string(i)}));
  }
  auto consumer = remote_->CreateConsumer("billing", topic_);
  TXMQ_ASSERT_OK(consumer);
  std::vector<std::string> got;
  while (got.size() < 10) {
    auto batch = (*consumer)->Receive(4, absl::Seconds(5));
    TXMQ_ASSERT_OK(batch);
    ASSERT_FALSE(batch->empty());
    for (const MessageView& m : *batch) {
      got.emplace_back(m.body());
      EXPECT_EQ(m.topic(), topic_);
      EXPECT_EQ(m.key(), "k");
    }
    TXMQ_ASSERT_OK((*consumer)->Ack(*batch));
  }
  EXPECT_EQ(got.front(), "m0");  // one key: one queue, in order
  EXPECT_EQ(got.back(), "m9");
  TXMQ_ASSERT_OK((*consumer)->Flush());
  auto lag = broker_->DescribeGroup("billing", topic_);
  TXMQ_ASSERT_OK(lag);
  EXPECT_EQ(lag->total(), 0u);
  uint64_t committed = 0;
  for (uint32_t q = 0; q < queues_; ++q) {
    committed += *(*consumer)->CommittedOffset(q);
  }
  EXPECT_EQ(committed, 10u);
  EXPECT_TRUE(
      absl::IsNotFound(remote_->CreateConsumer("billing", "nope").status()));
}

TEST_F(RpcTest, ASlowConsumerHoldsAtMostItsWindow) {
  auto remote = RemoteBroker::Connect(server_->address(), {.max_in_flight = 5});
  TXMQ_ASSERT_OK(remote);
  for (int i = 0; i < 20; ++i) {
    TXMQ_ASSERT_OK(producer_->Send({.topic = topic_, .body = "x"}));
  }
  auto consumer = (*remote)->CreateConsumer("slow", topic_);
  TXMQ_ASSERT_OK(consumer);
  auto first = (*consumer)->Receive(100, absl::Seconds(5));
  TXMQ_ASSERT_OK(first);
  EXPECT_EQ(first->size(), 5u);
  auto none = (*consumer)->Receive(100, absl::ZeroDuration());
  TXMQ_ASSERT_OK(none);
  EXPECT_TRUE(none->empty());  // the window is full until some are settled
  TXMQ_ASSERT_OK((*consumer)->Ack((*first)[0]));
  TXMQ_ASSERT_OK((*consumer)->Ack((*first)[1]));
  auto two = (*consumer)->Receive(100, absl::Seconds(5));
  TXMQ_ASSERT_OK(two);
  EXPECT_EQ(two->size(), 2u);
  // A batch is a copy: it outlives anything on the server.
  EXPECT_EQ((*first)[4].body(), "x");
  consumer->reset();
}

TEST_F(RpcTest, RemoteRetriesAndInvisibleTime) {
  ConsumerOptions options;
  options.retry.backoff = {absl::Seconds(1)};
  auto consumer = remote_->CreateConsumer("retrying", topic_, options);
  TXMQ_ASSERT_OK(consumer);
  TXMQ_ASSERT_OK(producer_->Send({.topic = topic_, .body = "again"}));
  auto batch = (*consumer)->Receive(10, absl::Seconds(5));
  TXMQ_ASSERT_OK(batch);
  ASSERT_EQ(batch->size(), 1u);
  const MessageId id = (*batch)[0].id();
  TXMQ_ASSERT_OK(
      (*consumer)->ChangeInvisibleDuration((*batch)[0], absl::Minutes(5)));
  TXMQ_ASSERT_OK((*consumer)->ReconsumeLater((*batch)[0], std::nullopt));
  EXPECT_FALSE((*consumer)->ReconsumeLater((*batch)[0], std::nullopt).ok());
  clock_->Advance(absl::Seconds(2));
  ReceivedBatch again;
  ASSERT_TRUE(Eventually([&] {
    auto b = (*consumer)->Receive(10, absl::Milliseconds(100));
    if (!b.ok() || b->empty()) return false;
    again = *std::move(b);
    return true;
  }));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id(), id);  // the original's id, as in process
  EXPECT_EQ(again[0].reconsume_times(), 1u);
  EXPECT_EQ(again[0].body(), "again");
  TXMQ_ASSERT_OK((*consumer)->Ack(again));
  batch->messages();
  EXPECT_TRUE(absl::IsInvalidArgument((*consumer)->Ack(MessageView())));
}

TEST_F(RpcTest, ARemoteCheckerAnswersCheckBacksUntilItsClientLeaves) {
  class Commits : public TransactionChecker {
   public:
    TransactionState Check(const HalfMessage& half) override {
      ++calls;
      body = std::string(half.message.body());
      return TransactionState::kCommit;
    }
    std::atomic<int> calls{0};
    std::string body;
  };
  auto checker = std::make_shared<Commits>();
  CheckPolicy policy;
  policy.first_interval = absl::Seconds(1);
  TXMQ_ASSERT_OK(remote_->RegisterChecker("orders-tx", checker, policy));
  auto producer = remote_->CreateProducer({.group = "orders-tx"});
  {
    auto txn = (*producer)->Begin({.topic = topic_, .body = "checked"},
                                  {.first_check = absl::Seconds(1)});
    TXMQ_ASSERT_OK(txn);
  }
  clock_->Advance(absl::Seconds(2));
  EXPECT_TRUE(Eventually([&] { return Count() == 1; }));
  EXPECT_EQ(checker->calls.load(), 1);
  EXPECT_EQ(checker->body, "checked");
  // Its client gone, the group has no checker: nothing is checked (and no
  // check is counted) until one registers again.
  {
    auto txn = (*producer)->Begin({.topic = topic_, .body = "waits"},
                                  {.first_check = absl::Seconds(1)});
    TXMQ_ASSERT_OK(txn);
  }
  EXPECT_EQ(server_->Stats().remote_checkers, 1u);
  producer->reset();
  remote_.reset();
  ASSERT_TRUE(
      Eventually([&] { return server_->Stats().remote_checkers == 0; }));
  EXPECT_EQ(server_->Stats().connections, 0u);
  clock_->Advance(absl::Seconds(2));
  Settle();
  auto pending = broker_->ListTransactions();
  TXMQ_ASSERT_OK(pending);
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].checks, 0u);
  EXPECT_EQ(Count(), 1u);
  // A new client registers: checked and committed.
  auto again = RemoteBroker::Connect(server_->address());
  TXMQ_ASSERT_OK(again);
  TXMQ_ASSERT_OK((*again)->RegisterChecker("orders-tx", checker, policy));
  clock_->Advance(absl::Seconds(2));
  EXPECT_TRUE(Eventually([&] { return Count() == 2; }));
  TXMQ_ASSERT_OK((*again)->UnregisterChecker("orders-tx"));
  EXPECT_TRUE(absl::IsNotFound((*again)->UnregisterChecker("orders-tx")));
}

TEST_F(RpcTest, AFailedReRegistrationKeepsTheWorkingOne) {
  class Commits : public TransactionChecker {
   public:
    TransactionState Check(const HalfMessage&) override {
      return TransactionState::kCommit;
    }
  };
  CheckPolicy policy;
  policy.first_interval = absl::Seconds(1);
  TXMQ_ASSERT_OK(remote_->RegisterChecker("orders-tx",
                                          std::make_shared<Commits>(), policy));
  CheckPolicy bad = policy;
  bad.first_interval = -absl::Seconds(1);
  EXPECT_TRUE(absl::IsInvalidArgument(
      remote_->RegisterChecker("orders-tx", std::make_shared<Commits>(), bad)));
  auto producer = remote_->CreateProducer({.group = "orders-tx"});
  TXMQ_ASSERT_OK((*producer)->Begin({.topic = topic_, .body = "x"},
                                    {.first_check = absl::Seconds(1)}));
  clock_->Advance(absl::Seconds(2));
  EXPECT_TRUE(Eventually([&] { return Count() == 1; }));
}

TEST_F(RpcTest, ADisconnectLeavesTheHostsOwnCheckerAlone) {
  class Answers : public TransactionChecker {
   public:
    explicit Answers(TransactionState s) : state(s) {}
    TransactionState Check(const HalfMessage&) override { return state; }
    const TransactionState state;
  };
  TXMQ_ASSERT_OK(remote_->RegisterChecker(
      "orders-tx", std::make_shared<Answers>(TransactionState::kRollback)));
  // The host registers its own afterwards; then the client leaves.
  CheckPolicy policy;
  policy.first_interval = absl::Seconds(1);
  TXMQ_ASSERT_OK(broker_->RegisterChecker(
      "orders-tx", std::make_shared<Answers>(TransactionState::kCommit),
      policy));
  remote_.reset();
  ASSERT_TRUE(
      Eventually([&] { return server_->Stats().remote_checkers == 0; }));
  TXMQ_ASSERT_OK(producer_->Begin({.topic = topic_, .body = "host"},
                                  {.first_check = absl::Seconds(1)}));
  clock_->Advance(absl::Seconds(2));
  EXPECT_TRUE(Eventually([&] { return Count() == 1; }));  // still checked
}

TEST_F(RpcTest, ABatchOfAnotherConsumerIsCheckedViewByView) {
  TXMQ_ASSERT_OK(producer_->Send({.topic = topic_, .body = "one"}));
  auto a = remote_->CreateConsumer("a", topic_);
  auto b = remote_->CreateConsumer("b", topic_);
  auto batch = (*b)->Receive(10, absl::Seconds(5));
  TXMQ_ASSERT_OK(batch);
  ASSERT_EQ(batch->size(), 1u);
  EXPECT_TRUE(absl::IsInvalidArgument((*a)->Ack(*batch)));
  TXMQ_EXPECT_OK((*b)->Ack(*batch));
  EXPECT_TRUE(absl::IsFailedPrecondition((*b)->Ack(*batch)));  // settled
}

TEST_F(RpcTest, TheSocketPathIsTakenOnlyWhenFree) {
  // A live server's socket: refused.
  auto second = RpcServer::Start(*broker_, {.listen = server_->address()});
  EXPECT_TRUE(absl::IsUnavailable(second.status())) << second.status();
  // A regular file: refused, and left alone.
  std::ofstream(tmp_.Sub("file")) << "keep me";
  auto file =
      RpcServer::Start(*broker_, {.listen = "unix:" + tmp_.Sub("file")});
  EXPECT_TRUE(absl::IsFailedPrecondition(file.status())) << file.status();
  EXPECT_EQ(ReadFile(tmp_.Sub("file")), "keep me");
  // A dead server's socket: replaced.
  const std::string stale = tmp_.Sub("stale.sock");
  {
    auto s = RpcServer::Start(*broker_, {.listen = "unix:" + stale});
    TXMQ_ASSERT_OK(s);
    (*s)->Stop();
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, stale.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);  // a socket file nobody listens on
  auto replaced = RpcServer::Start(*broker_, {.listen = "unix:" + stale});
  TXMQ_EXPECT_OK(replaced);
}

TEST_F(RpcTest, AConnectionThatNeverLogsInIsClosed) {
  ServeOptions serve{.listen = "unix:" + tmp_.Sub("login.sock"),
                     .login_timeout = absl::Milliseconds(200)};
  auto server = RpcServer::Start(*broker_, serve);
  TXMQ_ASSERT_OK(server);
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = tmp_.Sub("login.sock");
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_TRUE(Eventually([&] { return (*server)->Stats().connections == 1; }));
  char c;
  EXPECT_EQ(read(fd, &c, 1), 0);  // the server hung up
  close(fd);
  EXPECT_TRUE(Eventually([&] { return (*server)->Stats().connections == 0; }));
  // A client that logs in stays past the deadline.
  auto remote = RemoteBroker::Connect((*server)->address());
  TXMQ_ASSERT_OK(remote);
  absl::SleepFor(absl::Milliseconds(400));
  TXMQ_EXPECT_OK((*remote)->ListTopics());
}

TEST_F(RpcTest, SilentConnectionsBeyondTheCapAreClosedAtOnce) {
  ServeOptions serve{.listen = "unix:" + tmp_.Sub("cap.sock"),
                     .max_pending_logins = 2};
  auto server = RpcServer::Start(*broker_, serve);
  TXMQ_ASSERT_OK(server);
  const std::string path = tmp_.Sub("cap.sock");
  auto connect_raw = [&] {
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    return fd;
  };
  // A client that logs in does not count against the cap.
  auto first = RemoteBroker::Connect((*server)->address());
  TXMQ_ASSERT_OK(first);
  const int a = connect_raw();
  const int b = connect_raw();
  ASSERT_TRUE(Eventually([&] { return (*server)->Stats().connections == 3; }));
  const int c = connect_raw();
  char byte;
  EXPECT_EQ(read(c, &byte, 1), 0);  // hung up at once
  EXPECT_EQ((*server)->Stats().refused_connections, 1u);
  EXPECT_EQ((*server)->Stats().connections, 3u);
  // Nor can a client log in while the cap is reached...
  EXPECT_EQ(RemoteBroker::Connect((*server)->address()).status().code(),
            absl::StatusCode::kUnavailable);
  // ...and once a silent peer leaves, one can.
  close(a);
  ASSERT_TRUE(Eventually([&] { return (*server)->Stats().connections == 2; }));
  auto second = RemoteBroker::Connect((*server)->address());
  TXMQ_ASSERT_OK(second);
  TXMQ_EXPECT_OK((*second)->ListTopics());
  TXMQ_EXPECT_OK((*first)->ListTopics());
  close(b);
  close(c);
}

TEST_F(RpcTest, UnixSocketIsOwnerOnly) {
  struct stat st;
  ASSERT_EQ(::stat(tmp_.Sub("mq.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  server_->Stop();
  EXPECT_NE(::stat(tmp_.Sub("mq.sock").c_str(), &st), 0);  // removed
}

TEST_F(RpcTest, TcpNeedsTheToken) {
  ServeOptions serve{.listen = "127.0.0.1:0", .token = "s3cret"};
  auto server = RpcServer::Start(*broker_, serve);
  TXMQ_ASSERT_OK(server);
  const std::string address = (*server)->address();
  EXPECT_THAT(address, HasSubstr("127.0.0.1:"));
  EXPECT_TRUE(absl::IsPermissionDenied(
      RemoteBroker::Connect(address, {.token = "wrong"}).status()));
  EXPECT_TRUE(
      absl::IsPermissionDenied(RemoteBroker::Connect(address).status()));
  auto ok = RemoteBroker::Connect(address, {.token = "s3cret"});
  TXMQ_ASSERT_OK(ok);
  TXMQ_EXPECT_OK((*ok)->ListTopics());
}

TEST_F(RpcTest, NonLoopbackWithoutATokenIsRefusedUnlessForced) {
  auto refused = RpcServer::Start(*broker_, {.listen = "0.0.0.0:0"});
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status()));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("token"));
  auto forced = RpcServer::Start(
      *broker_, {.listen = "0.0.0.0:0", .insecure_no_token = true});
  TXMQ_EXPECT_OK(forced);
  for (const char* bad : {"", "nohostport", "host:99999", "unix:"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(
        RpcServer::Start(*broker_, {.listen = bad}).status()))
        << bad;
  }
}

TEST_F(RpcTest, NothingThereIsUnavailable) {
  auto remote = RemoteBroker::Connect("unix:" + tmp_.Sub("nothing.sock"),
                                      {.connect_timeout = absl::Seconds(2)});
  EXPECT_TRUE(absl::IsUnavailable(remote.status())) << remote.status();
}

TEST_F(RpcTest, StoppingTheServerFailsCallsWithUnavailable) {
  auto producer = remote_->CreateProducer();
  TXMQ_ASSERT_OK((*producer)->Send({.topic = topic_, .body = "before"}));
  server_->Stop();
  auto after = (*producer)->Send({.topic = topic_, .body = "after"});
  EXPECT_TRUE(absl::IsUnavailable(after.status())) << after.status();
  EXPECT_EQ(Bodies(), std::vector<std::string>{"before"});
}

TEST_F(RpcTest, AnOversizedRequestIsRefusedAndTheServerGoesOn) {
  ServeOptions serve{.listen = "unix:" + tmp_.Sub("small.sock"),
                     .max_request_bytes = 64 << 10};
  auto server = RpcServer::Start(*broker_, serve);
  TXMQ_ASSERT_OK(server);
  {
    auto remote = RemoteBroker::Connect((*server)->address());
    TXMQ_ASSERT_OK(remote);
    auto producer = (*remote)->CreateProducer();
    auto big =
        (*producer)->Send({.topic = topic_, .body = std::string(1 << 20, 'x')});
    EXPECT_FALSE(big.ok());
    EXPECT_TRUE(absl::IsUnavailable(big.status())) << big.status();
  }
  auto again = RemoteBroker::Connect((*server)->address());
  TXMQ_ASSERT_OK(again);
  auto producer = (*again)->CreateProducer();
  TXMQ_EXPECT_OK((*producer)->Send({.topic = topic_, .body = "small"}));
  EXPECT_EQ(Bodies(), std::vector<std::string>{"small"});
}

}  // namespace
}  // namespace txmq::testing
