// Consumer-group progress: lag per queue, listing, and offset resets.

#include <string>

#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::TempDir;

class GroupAdminTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    producer_.reset();
    broker_.reset();
    Options options;
    options.clock = clock_;
    auto broker = Broker::Open(tmp_.path(), options);
    TXMQ_ASSERT_OK(broker);
    broker_ = *std::move(broker);
    if (!broker_->DescribeTopic("t").ok()) {
      TXMQ_ASSERT_OK(broker_->CreateTopic("t", {.queues = 2}));
    }
    producer_ =
        *broker_->CreateProducer({.selector = QueueSelector::kRoundRobin});
  }

  // Sends `n` messages, one clock second apart.
  void SendSpaced(int n) {
    for (int i = 0; i < n; ++i) {
      TXMQ_ASSERT_OK(
          producer_->Send({.topic = "t", .body = std::to_string(i)}));
      clock_->Advance(absl::Seconds(1));
    }
  }

  std::vector<std::string> Drain(Consumer& consumer) {
    std::vector<std::string> bodies;
    while (true) {
      auto batch = consumer.Receive(100, absl::Milliseconds(50));
      EXPECT_TRUE(batch.ok());
      if (!batch.ok() || batch->empty()) break;
      for (const MessageView& m : *batch) bodies.emplace_back(m.body());
      EXPECT_TRUE(consumer.Ack(*batch).ok());
    }
    return bodies;
  }

  TempDir tmp_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Producer> producer_;
};

TEST_F(GroupAdminTest, LagIsEndMinusCommittedPerQueue) {
  SendSpaced(10);  // 5 per queue
  auto consumer = broker_->CreateConsumer("g", "t");
  auto batch = (*consumer)->Receive(3, absl::ZeroDuration());
  TXMQ_ASSERT_OK(batch);
  TXMQ_ASSERT_OK((*consumer)->Ack(*batch));
  auto lag = broker_->DescribeGroup("g", "t");
  TXMQ_ASSERT_OK(lag);
  ASSERT_EQ(lag->queues.size(), 2u);
  EXPECT_EQ(lag->total(), 7u);
  for (const GroupQueueLag& q : lag->queues) {
    EXPECT_EQ(q.end, 5u);
    EXPECT_EQ(q.lag, q.end - q.committed);
  }
  // The same after a restart (acknowledgements were written on close).
  *batch = ReceivedBatch();
  consumer->reset();
  Open();
  EXPECT_EQ(broker_->DescribeGroup("g", "t")->total(), 7u);
}

TEST_F(GroupAdminTest, ListGroupsShowsEveryGroupAndTopic) {
  TXMQ_ASSERT_OK(broker_->CreateTopic("u"));
  SendSpaced(4);
  auto a = broker_->CreateConsumer("a", "t");
  auto b =
      broker_->CreateConsumer("b", "t", {.start_from = StartFrom::kLatest});
  auto c = broker_->CreateConsumer("a", "u");
  auto listed = broker_->ListGroups();
  TXMQ_ASSERT_OK(listed);
  // Each group also reads its retry topic for each topic (consumer.h).
  std::vector<std::pair<std::string, std::string>> names;
  std::vector<GroupLag> groups;
  for (const GroupLag& lag : *listed) {
    names.emplace_back(lag.group, lag.topic);
    if (lag.topic[0] != '%') groups.push_back(lag);
  }
  EXPECT_EQ(names, (std::vector<std::pair<std::string, std::string>>{
                       {"a", "%RETRY%a%t"},
                       {"a", "%RETRY%a%u"},
                       {"a", "t"},
                       {"a", "u"},
                       {"b", "%RETRY%b%t"},
                       {"b", "t"}}));
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0].group, "a");
  EXPECT_EQ(groups[0].topic, "t");
  EXPECT_EQ(groups[0].total(), 4u);
  EXPECT_EQ(groups[1].group, "a");
  EXPECT_EQ(groups[1].topic, "u");
  EXPECT_EQ(groups[2].group, "b");
  EXPECT_EQ(groups[2].total(), 0u);
}

TEST_F(GroupAdminTest, ResetMovesLiveConsumersToEarliestLatestOrTime) {
  SendSpaced(10);  // store times: t0, t0+1s, ... t0+9s
  const absl::Time t0 = clock_->Now() - absl::Seconds(10);
  auto consumer = broker_->CreateConsumer("g", "t");
  EXPECT_EQ(Drain(**consumer).size(), 10u);
  EXPECT_EQ(broker_->DescribeGroup("g", "t")->total(), 0u);

  TXMQ_ASSERT_OK(
      broker_->ResetGroup("g", "t", {.to = OffsetReset::To::kEarliest}));
  EXPECT_EQ(broker_->DescribeGroup("g", "t")->total(), 10u);
  EXPECT_EQ(Drain(**consumer).size(), 10u);

  // Messages stored at or after t0+6s: bodies 6..9.
  TXMQ_ASSERT_OK(broker_->ResetGroup(
      "g", "t", {.to = OffsetReset::To::kTime, .time = t0 + absl::Seconds(6)}));
  std::vector<std::string> got = Drain(**consumer);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"6", "7", "8", "9"}));

  TXMQ_ASSERT_OK(
      broker_->ResetGroup("g", "t", {.to = OffsetReset::To::kEarliest}));
  TXMQ_ASSERT_OK(
      broker_->ResetGroup("g", "t", {.to = OffsetReset::To::kLatest}));
  EXPECT_TRUE(Drain(**consumer).empty());
  // Survives a restart.
  consumer->reset();
  Open();
  auto again = broker_->CreateConsumer("g", "t");
  EXPECT_TRUE(Drain(**again).empty());
}

TEST_F(GroupAdminTest, ResetCreatesOffsetsForANewGroup) {
  SendSpaced(6);
  TXMQ_ASSERT_OK(
      broker_->ResetGroup("fresh", "t",
                          {.to = OffsetReset::To::kTime,
                           .time = clock_->Now() - absl::Seconds(2)}));
  auto consumer = broker_->CreateConsumer("fresh", "t");
  EXPECT_EQ(Drain(**consumer).size(), 2u);
}

TEST_F(GroupAdminTest, Errors) {
  EXPECT_EQ(broker_->DescribeGroup("never", "t").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(broker_->DescribeGroup("g", "nope").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(broker_->DescribeGroup("bad group", "t").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broker_->ResetGroup("g", "nope", {}).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(broker_->ResetGroup("%DLQ%x", "t", {}).code(),
            absl::StatusCode::kInvalidArgument);
  TXMQ_ASSERT_OK(broker_->DeleteTopic("t"));
  EXPECT_TRUE(broker_->ListGroups()->empty());
}

}  // namespace
}  // namespace txmq
