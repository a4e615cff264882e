// The RPC front across real processes: `txmq serve` in a child process,
// clients in this one and in others, over a Unix socket and loopback TCP.

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "child_process.h"
#include "cli/cli_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/remote_broker.h"
#include "txmq/txmq.h"

namespace txmq::testing {
namespace {

using ::testing::HasSubstr;

// `txmq serve` in a child process; address() once it serves.
class Server {
 public:
  Server(const std::string& dir, const std::string& listen,
         std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--data", dir, "serve", "--listen",
                                     listen};
    args.insert(args.end(), extra.begin(), extra.end());
    process_ = std::make_unique<CliProcess>(
        args, "", std::map<std::string, std::string>{});
    serving_ = Eventually([&] {
      const std::string out = process_->OutSoFar();
      const size_t on = out.find(" on ");
      const size_t end = out.find(" (Ctrl-C");
      if (on == std::string::npos || end == std::string::npos) return false;
      address_ = out.substr(on + 4, end - on - 4);
      return true;
    });
  }
  bool serving() const { return serving_; }
  const std::string& address() const { return address_; }
  CliResult Stop(int signal = SIGINT) {
    process_->Signal(signal);
    return process_->Wait();
  }

 private:
  std::unique_ptr<CliProcess> process_;
  std::string address_;
  bool serving_ = false;
};

class RpcProcessTest : public ::testing::TestWithParam<bool> {
 protected:
  // A Unix socket, or loopback TCP on a free port.
  std::string Listen() const {
    return GetParam() ? "unix:" + tmp_.Sub("mq.sock") : "127.0.0.1:0";
  }
  TempDir tmp_;
};

TEST_P(RpcProcessTest, ProduceAndConsumeThroughAServerProcess) {
  Server server(tmp_.Sub("data"), Listen());
  ASSERT_TRUE(server.serving());
  {
    auto remote = RemoteBroker::Connect(server.address());
    TXMQ_ASSERT_OK(remote);
    TXMQ_ASSERT_OK((*remote)->CreateTopic("orders", {.queues = 2}));
    auto producer = (*remote)->CreateProducer();
    for (int i = 0; i < 20; ++i) {
      TXMQ_ASSERT_OK((*producer)->Send(
          {.topic = "orders", .body = "m" + std::to_string(i)}));
    }
    auto consumer = (*remote)->CreateConsumer("billing", "orders");
    TXMQ_ASSERT_OK(consumer);
    std::set<std::string> got;
    while (got.size() < 20) {
      auto batch = (*consumer)->Receive(100, absl::Seconds(5));
      TXMQ_ASSERT_OK(batch);
      ASSERT_FALSE(batch->empty());
      for (const MessageView& m : *batch) got.emplace(m.body());
      TXMQ_ASSERT_OK((*consumer)->Ack(*batch));
    }
    TXMQ_ASSERT_OK((*consumer)->Flush());
  }
  const CliResult stopped = server.Stop();
  EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
  EXPECT_THAT(stopped.out, HasSubstr("stopped"));
  // Everything reached the directory.
  auto inspector = Inspector::Open(tmp_.Sub("data"));
  TXMQ_ASSERT_OK(inspector);
  EXPECT_EQ((*inspector)->Stat()->messages, 20u);
  EXPECT_EQ((*inspector)->Stat()->total_lag, 0u);
}

TEST_P(RpcProcessTest, ARemoteProducerKilledBetweenBeginAndCommit) {
  Server server(tmp_.Sub("data"), Listen());
  ASSERT_TRUE(server.serving());
  auto remote = RemoteBroker::Connect(server.address());
  TXMQ_ASSERT_OK(remote);
  TXMQ_ASSERT_OK((*remote)->CreateTopic("orders", {.queues = 1}));
  // The group's checker lives in this process; the producer in another.
  class Commits : public TransactionChecker {
   public:
    TransactionState Check(const HalfMessage&) override {
      return TransactionState::kCommit;
    }
  };
  CheckPolicy policy;
  policy.transaction_timeout = absl::Milliseconds(100);
  policy.first_interval = absl::Milliseconds(100);
  TXMQ_ASSERT_OK((*remote)->RegisterChecker(
      "order-service", std::make_shared<Commits>(), policy));
  {
    ChildProcess producer(
        {"remote-begin", server.address(), "order-service", "orders"});
    ASSERT_TRUE(producer.ok());
    producer.Kill();
  }
  EXPECT_TRUE(Eventually([&] {
    auto info = (*remote)->DescribeTopic("orders");
    return info.ok() && info->message_count() == 1;
  }));
  remote->reset();
  EXPECT_EQ(server.Stop().exit_code, 0);
}

TEST_P(RpcProcessTest, AServerKilledAndRestartedLosesNothingAcknowledged) {
  const std::string dir = tmp_.Sub("data");
  std::set<std::string> acked;
  {
    Server server(dir, Listen());
    ASSERT_TRUE(server.serving());
    auto remote = RemoteBroker::Connect(server.address());
    TXMQ_ASSERT_OK(remote);
    TXMQ_ASSERT_OK((*remote)->CreateTopic("orders", {.queues = 4}));
    auto producer = (*remote)->CreateProducer();
    absl::Mutex mu;
    std::atomic<bool> stop{false};
    std::vector<std::thread> senders;
    for (int t = 0; t < 4; ++t) {
      senders.emplace_back([&, t] {
        for (int i = 0; !stop.load(); ++i) {
          auto r = (*producer)->Send(
              {.topic = "orders", .body = absl::StrFormat("t%d-%d", t, i)});
          if (!r.ok()) return;  // the server died: not acknowledged
          absl::MutexLock lock(&mu);
          acked.insert(r->id.ToString());
        }
      });
    }
    ASSERT_TRUE(Eventually([&] {
      absl::MutexLock lock(&mu);
      return acked.size() >= 200;
    }));
    server.Stop(SIGKILL);
    stop = true;
    for (std::thread& t : senders) t.join();
  }
  Server again(dir, Listen());
  ASSERT_TRUE(again.serving());
  {
    auto remote = RemoteBroker::Connect(again.address());
    TXMQ_ASSERT_OK(remote);
    auto consumer = (*remote)->CreateConsumer("audit", "orders");
    TXMQ_ASSERT_OK(consumer);
    std::set<std::string> stored;
    while (true) {
      auto batch = (*consumer)->Receive(1000, absl::Milliseconds(200));
      TXMQ_ASSERT_OK(batch);
      if (batch->empty()) break;
      for (const MessageView& m : *batch) stored.insert(m.id().ToString());
      TXMQ_ASSERT_OK((*consumer)->Ack(*batch));
    }
    for (const std::string& id : acked) {
      ASSERT_TRUE(stored.contains(id)) << "acknowledged " << id << " lost";
    }
  }
  EXPECT_EQ(again.Stop().exit_code, 0);
}

INSTANTIATE_TEST_SUITE_P(Transports, RpcProcessTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "UnixSocket" : "LoopbackTcp";
                         });

TEST(RpcProcessErrorsTest, GarbageOnTheSocketIsDroppedAndServingGoesOn) {
  TempDir tmp;
  Server server(tmp.Sub("data"), "unix:" + tmp.Sub("mq.sock"));
  ASSERT_TRUE(server.serving());
  for (int round = 0; round < 3; ++round) {
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = tmp.Sub("mq.sock");
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    // A segment table claiming a huge message, then noise.
    const std::string garbage =
        round == 0 ? std::string(
                         "\x00\x00\x00\x00\xff\xff"
                         "\xff\x7f",
                         8) +
                         std::string(64, 'z')
                   : std::string(4096, static_cast<char>(round));
    ASSERT_EQ(write(fd, garbage.data(), garbage.size()),
              static_cast<ssize_t>(garbage.size()));
    char buf[64];
    (void)read(fd, buf, sizeof(buf));  // the server hangs up
    close(fd);
  }
  auto remote = RemoteBroker::Connect(server.address());
  TXMQ_ASSERT_OK(remote);
  TXMQ_EXPECT_OK((*remote)->CreateTopic("still-here"));
  remote->reset();
  EXPECT_EQ(server.Stop().exit_code, 0);
}

TEST(RpcProcessErrorsTest, TokensAcrossProcesses) {
  TempDir tmp;
  std::ofstream(tmp.Sub("token")) << "correct horse battery staple\n";
  Server server(tmp.Sub("data"), "127.0.0.1:0",
                {"--token-file", tmp.Sub("token")});
  ASSERT_TRUE(server.serving());
  EXPECT_TRUE(absl::IsPermissionDenied(
      RemoteBroker::Connect(server.address()).status()));
  auto ok = RemoteBroker::Connect(server.address(),
                                  {.token = "correct horse battery staple"});
  TXMQ_ASSERT_OK(ok);
  ok->reset();
  EXPECT_EQ(server.Stop().exit_code, 0);
  // Refusals of `txmq serve` itself.
  const CliResult open =
      RunCli({"--data", tmp.Sub("data"), "serve", "--listen", "0.0.0.0:0"});
  EXPECT_EQ(open.exit_code, 1);
  EXPECT_THAT(open.err, HasSubstr("without a token"));
  std::ofstream(tmp.Sub("empty"));
  const CliResult empty =
      RunCli({"--data", tmp.Sub("data"), "serve", "--listen", "127.0.0.1:0",
              "--token-file", tmp.Sub("empty")});
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_THAT(empty.err, HasSubstr("is empty"));
}

}  // namespace
}  // namespace txmq::testing
