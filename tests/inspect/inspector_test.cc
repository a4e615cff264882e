// txmq::Inspector: the read-only view of a data directory.

#include "txmq/inspector.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "broker_fixture.h"
#include "child_process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace txmq::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class InspectorTest : public BrokerFixture {
 protected:
  void SetUp() override {
    producer_options_.group = "pg";
    BrokerFixture::SetUp();
  }

  // Closes the broker (an Inspector may not share the process with it) and
  // opens an Inspector.
  std::unique_ptr<Inspector> Inspect() {
    consumer_.reset();
    producer_.reset();
    broker_.reset();
    auto inspector = Inspector::Open(tmp_.path());
    EXPECT_TRUE(inspector.ok()) << inspector.status();
    return inspector.ok() ? *std::move(inspector) : nullptr;
  }

  SendResult Send(const std::string& key, const std::string& body) {
    auto r = producer_->Send({.topic = "orders", .key = key, .body = body});
    EXPECT_TRUE(r.ok()) << r.status();
    clock_->Advance(absl::Milliseconds(10));
    return r.ok() ? *r : SendResult{};
  }

  std::unique_ptr<Consumer> consumer_;
};

TEST_F(InspectorTest, OneEnvironmentPerDirectoryPerProcess) {
  // A Broker has it: no Inspector.
  auto inspector = Inspector::Open(tmp_.path());
  EXPECT_TRUE(absl::IsFailedPrecondition(inspector.status()));
  EXPECT_THAT(std::string(inspector.status().message()),
              HasSubstr("open in this process already"));
  // An Inspector has it: no Broker, no second Inspector.
  auto in = Inspect();
  ASSERT_NE(in, nullptr);
  auto broker = Broker::Open(tmp_.path());
  EXPECT_TRUE(absl::IsFailedPrecondition(broker.status()));
  EXPECT_THAT(std::string(broker.status().message()),
              HasSubstr("already open in this process"));
  EXPECT_TRUE(
      absl::IsFailedPrecondition(Inspector::Open(tmp_.path()).status()));
  // Closed: open again.
  in.reset();
  TXMQ_EXPECT_OK(Broker::Open(tmp_.path()));
}

TEST_F(InspectorTest, APendingTransactionOfADeletedTopicIsNotDamage) {
  auto txn = producer_->Begin({.topic = "orders", .body = "h"});
  TXMQ_ASSERT_OK(txn);
  txn->reset();
  TXMQ_ASSERT_OK(broker_->DeleteTopic("orders"));
  auto in = Inspect();
  ASSERT_NE(in, nullptr);
  auto report = in->Verify();
  TXMQ_ASSERT_OK(report);
  EXPECT_TRUE(report->ok()) << report->problems[0];
  EXPECT_EQ(in->ListTransactions()->size(), 1u);
}

TEST_F(InspectorTest, LongCallsStopWhenAsked) {
  // More rows than Verify counts between two calls of `progress`.
  std::vector<Message> batch(5000, Message{.topic = "orders", .body = "x"});
  TXMQ_ASSERT_OK(producer_->SendBatch(batch));
  auto in = Inspect();
  ASSERT_NE(in, nullptr);
  int calls = 0;
  auto stop = [&](uint64_t, uint64_t) { return ++calls < 1; };
  EXPECT_TRUE(absl::IsCancelled(in->Verify(stop).status()));
  EXPECT_EQ(calls, 1);
  // Nothing held: the next call works.
  TXMQ_EXPECT_OK(in->Verify());
}

TEST_F(InspectorTest, TheOwnerFreesTheSlotOfAReaderKilledMidRead) {
  options_.retention_check_interval = absl::Seconds(1);
  Open();
  Send("k", "x");
  // A reader process (a txmq CLI killed mid-verify) dies holding a read
  // transaction while the owner runs: the owner frees its slot within a
  // retention interval. (With no owner running, the next open resets the
  // whole reader table.)
  {
    ChildProcess reader({"read", tmp_.path()});
    ASSERT_TRUE(reader.ok());
    reader.Kill();
  }
  EXPECT_EQ(broker_->Stats().stale_readers_cleared, 0u);
  clock_->Advance(absl::Seconds(1));
  EXPECT_TRUE(
      Eventually([&] { return broker_->Stats().stale_readers_cleared == 1; }));
}

TEST_F(InspectorTest, ALongLivedInspectorFollowsNewTables) {
  TempDir live;
  const std::string dir = live.Sub("d");
  TXMQ_ASSERT_OK(Broker::Open(dir));  // created, then closed
  auto in = Inspector::Open(dir);
  TXMQ_ASSERT_OK(in);
  TXMQ_ASSERT_OK((*in)->ListTopics());
  // Another process creates more tables than the Inspector first had room
  // for, while it stays open.
  ChildProcess owner({"topics", dir, "3", "1000"});
  ASSERT_TRUE(owner.ok());
  auto topics = (*in)->ListTopics();
  TXMQ_ASSERT_OK(topics);
  EXPECT_EQ(topics->size(), 3u);
  TXMQ_EXPECT_OK((*in)->DescribeTopic("t2"));
  auto report = (*in)->Verify();
  TXMQ_ASSERT_OK(report);
  EXPECT_TRUE(report->ok());
}

// Lines of the child's side file (one per acknowledged send).
size_t Acked(const std::string& sidefile) {
  std::vector<absl::string_view> lines =
      absl::StrSplit(ReadFile(sidefile), '\n', absl::SkipEmpty());
  return lines.size();
}

TEST_F(InspectorTest, FollowsAnOwnerThatGrowsItsMap) {
  TempDir live;
  const std::string dir = live.Sub("d"), sidefile = live.Sub("acked");
  setenv("TXMQ_CHILD_MAP_BYTES", "1048576", 1);
  ChildProcess child({"send", dir, sidefile, "2", "async"});
  unsetenv("TXMQ_CHILD_MAP_BYTES");
  ASSERT_TRUE(child.ok());
  ASSERT_TRUE(Eventually([&] { return Acked(sidefile) > 0; }));
  auto in = Inspector::Open(dir);
  TXMQ_ASSERT_OK(in);
  auto first = (*in)->Stat();
  TXMQ_ASSERT_OK(first);
  uint64_t messages = first->messages;
  // Every call succeeds while the owner grows its map underneath, and what
  // it sees only grows.
  ASSERT_TRUE(Eventually([&] {
    const size_t acked = Acked(sidefile);
    auto s = (*in)->Stat();
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return true;
    EXPECT_GE(s->messages, messages);
    EXPECT_GE(s->messages, acked);
    messages = s->messages;
    if (s->map_bytes >= 4 * first->map_bytes) {
      std::printf("map %zu -> %zu bytes; %zu messages\n",
                  static_cast<size_t>(first->map_bytes),
                  static_cast<size_t>(s->map_bytes),
                  static_cast<size_t>(s->messages));
      return true;
    }
    return false;
  }));
  auto report = (*in)->Verify();
  TXMQ_ASSERT_OK(report);
  EXPECT_TRUE(report->ok());
}

}  // namespace
}  // namespace txmq::testing
