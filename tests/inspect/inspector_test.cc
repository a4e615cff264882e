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

TEST_F(InspectorTest, RefusesADirectoryThisProcessHasOpen) {
  auto inspector = Inspector::Open(tmp_.path());
  EXPECT_TRUE(absl::IsFailedPrecondition(inspector.status()));
  EXPECT_THAT(std::string(inspector.status().message()),
              HasSubstr("open by a Broker in this process"));
}

TEST_F(InspectorTest, OpenErrors) {
  TempDir other;
  EXPECT_TRUE(absl::IsNotFound(Inspector::Open(other.Sub("x")).status()));
  EXPECT_TRUE(
      absl::IsFailedPrecondition(Inspector::Open(other.path()).status()));
  std::ofstream(other.Sub("file")) << "x";
  EXPECT_TRUE(
      absl::IsFailedPrecondition(Inspector::Open(other.Sub("file")).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(Inspector::Open("").status()));
}

TEST_F(InspectorTest, ReportsWhatIsStored) {
  const SendResult a = Send("k1", "first");
  Send("k2", "second");
  const SendResult c = Send("k1", "third");
  auto consumer = broker_->CreateConsumer("g", "orders");
  TXMQ_ASSERT_OK(consumer);
  auto batch = (*consumer)->Receive(1, absl::Seconds(5));
  TXMQ_ASSERT_OK(batch);
  TXMQ_ASSERT_OK((*consumer)->Ack(*batch));
  TXMQ_ASSERT_OK((*consumer)->Flush());
  *batch = ReceivedBatch();
  consumer->reset();
  auto txn = producer_->Begin({.topic = "orders", .key = "t", .body = "h"});
  TXMQ_ASSERT_OK(txn);
  const TransactionId txid = (*txn)->id();
  txn->reset();

  auto in = Inspect();
  ASSERT_NE(in, nullptr);
  auto stats = in->Stat();
  TXMQ_ASSERT_OK(stats);
  EXPECT_EQ(stats->format_version, 1u);
  EXPECT_EQ(stats->messages, 3u);
  EXPECT_EQ(stats->pending_transactions, 1u);
  EXPECT_EQ(stats->groups, 1u);
  EXPECT_EQ(stats->total_lag, 2u);
  EXPECT_EQ(stats->owner_pid, 0);
  EXPECT_GT(stats->file_bytes, 0u);
  EXPECT_GT(stats->map_bytes, 0u);

  auto topics = in->ListTopics();
  TXMQ_ASSERT_OK(topics);
  ASSERT_EQ(topics->size(), 1u);  // the group's retry topic left out
  EXPECT_EQ((*topics)[0].name, "orders");
  EXPECT_GT(in->ListTopics(true)->size(), 1u);

  auto usage = in->DescribeTopic("orders");
  TXMQ_ASSERT_OK(usage);
  EXPECT_EQ(usage->info.message_count(), 3u);
  ASSERT_EQ(usage->queue_bytes.size(), 2u);
  EXPECT_TRUE(absl::IsNotFound(in->DescribeTopic("nope").status()));

  auto got = in->GetMessage(a.id);
  TXMQ_ASSERT_OK(got);
  EXPECT_EQ(got->body, "first");
  EXPECT_EQ(got->key, "k1");
  EXPECT_EQ(got->queue, a.queue);
  EXPECT_EQ(got->offset, a.offset);
  EXPECT_TRUE(absl::IsNotFound(in->GetMessage(MessageId()).status()));
  // Right place, wrong time: not that message.
  EXPECT_TRUE(absl::IsNotFound(
      in->GetMessage(MessageId::Make(1, a.id.queue_number(), a.offset))
          .status()));

  auto found = in->FindByKey("orders", "k1", 10);
  TXMQ_ASSERT_OK(found);
  ASSERT_EQ(found->size(), 2u);
  EXPECT_EQ((*found)[0].id, a.id);
  EXPECT_EQ((*found)[1].id, c.id);
  EXPECT_EQ(in->FindByKey("orders", "k1", 1)->size(), 1u);

  auto read = in->Read("orders", c.queue, 0, 100);
  TXMQ_ASSERT_OK(read);
  EXPECT_FALSE(read->empty());
  EXPECT_TRUE(absl::IsOutOfRange(in->Read("orders", 9, 0, 1).status()));

  auto halves = in->ListTransactions();
  TXMQ_ASSERT_OK(halves);
  ASSERT_EQ(halves->size(), 1u);
  EXPECT_EQ((*halves)[0].id, txid);
  EXPECT_EQ((*halves)[0].key, "t");
  EXPECT_TRUE(in->ListTransactions("", SIZE_MAX, true)->empty());

  auto groups = in->ListGroups();
  TXMQ_ASSERT_OK(groups);
  std::vector<std::string> names;
  for (const GroupLag& g : *groups) names.push_back(g.group + "/" + g.topic);
  EXPECT_THAT(names, ElementsAre("g/%RETRY%g%orders", "g/orders"));

  EXPECT_EQ(*in->CountDeadLetters("g"), 0u);
  EXPECT_TRUE(absl::IsNotFound(in->CountDeadLetters("h").status()));

  auto report = in->Verify();
  TXMQ_ASSERT_OK(report);
  EXPECT_TRUE(report->ok()) << report->problems[0];
  EXPECT_GE(report->records, 3u);
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
