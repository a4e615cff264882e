// Broadcasting consumers (MessageModel::kBroadcasting): every consumer of
// the group gets every message, each instance keeps its own progress and
// retries, and instances resume after a restart.

#include <algorithm>
#include <string>
#include <vector>

#include "broker_fixture.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::Eventually;

class BroadcastTest : public testing::BrokerFixture {
 protected:
  BroadcastTest() { topic_ = "config"; }

  std::unique_ptr<Consumer> Broadcast(const std::string& instance = "") {
    auto consumer = broker_->CreateConsumer(
        "caches", "config",
        {.model = MessageModel::kBroadcasting, .instance = instance});
    EXPECT_TRUE(consumer.ok()) << consumer.status();
    return consumer.ok() ? *std::move(consumer) : nullptr;
  }

  void Send(int n, int from = 0) {
    for (int i = from; i < from + n; ++i) {
      TXMQ_EXPECT_OK(
          producer_->Send({.topic = "config", .body = std::to_string(i)}));
    }
  }

  // Receives up to `max` and acknowledges them; sorted bodies.
  static std::vector<std::string> Take(Consumer& consumer,
                                       size_t max = SIZE_MAX) {
    std::vector<std::string> out;
    while (out.size() < max) {
      auto batch = consumer.Receive(max - out.size(), absl::ZeroDuration());
      EXPECT_TRUE(batch.ok()) << batch.status();
      if (!batch.ok() || batch->empty()) break;
      for (const MessageView& m : *batch) out.emplace_back(m.body());
      EXPECT_TRUE(consumer.Ack(*batch).ok());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  static std::vector<std::string> Bodies(int n, int from = 0) {
    std::vector<std::string> out;
    for (int i = from; i < from + n; ++i) out.push_back(std::to_string(i));
    std::sort(out.begin(), out.end());
    return out;
  }
};

TEST_F(BroadcastTest, EveryConsumerOfTheGroupGetsEveryMessage) {
  auto a = Broadcast();
  auto b = Broadcast();
  auto c = Broadcast();
  auto clustered = broker_->CreateConsumer("audit", "config");
  TXMQ_ASSERT_OK(clustered);
  Send(10);
  EXPECT_EQ(Take(*a), Bodies(10));
  EXPECT_EQ(Take(*b), Bodies(10));
  EXPECT_EQ(Take(*c), Bodies(10));
  EXPECT_EQ(Take(**clustered), Bodies(10));
  EXPECT_EQ(a->group(), "caches");
  for (const char* instance : {"caches%0", "caches%1", "caches%2"}) {
    auto lag = broker_->DescribeGroup(instance, "config");
    TXMQ_ASSERT_OK(lag);
    EXPECT_EQ(lag->total(), 0u);
  }
}

TEST_F(BroadcastTest, NumberedInstancesResumeAfterARestart) {
  {
    auto a = Broadcast();  // instance 0
    auto b = Broadcast();  // instance 1
    Send(10);
    EXPECT_EQ(Take(*a, 3).size(), 3u);
    EXPECT_EQ(Take(*b, 6).size(), 6u);
    TXMQ_ASSERT_OK(a->Flush());
    TXMQ_ASSERT_OK(b->Flush());
  }
  Open();
  auto a = Broadcast();
  auto b = Broadcast();
  EXPECT_EQ(Take(*a).size(), 7u);
  EXPECT_EQ(Take(*b).size(), 4u);
}

TEST_F(BroadcastTest, AFreedNumberIsReusedAndNamedInstancesKeepTheirOwn) {
  auto a = Broadcast();
  auto b = Broadcast();
  auto named = Broadcast("host-a");
  Send(4);
  EXPECT_EQ(Take(*a, 1).size(), 1u);
  EXPECT_EQ(Take(*named, 2).size(), 2u);
  a.reset();
  auto again = Broadcast();  // takes number 0 back: resumes a's progress
  EXPECT_EQ(Take(*again).size(), 3u);
  EXPECT_EQ(Take(*b).size(), 4u);
  EXPECT_EQ(Take(*named).size(), 2u);
}

TEST_F(BroadcastTest, RetriesStayWithTheirInstance) {
  auto a = Broadcast();
  auto b = Broadcast();
  Send(1);
  auto batch = a->Receive(10, absl::ZeroDuration());
  TXMQ_ASSERT_OK(batch);
  ASSERT_EQ(batch->size(), 1u);
  TXMQ_ASSERT_OK(a->ReconsumeLater((*batch)[0], absl::ZeroDuration()));
  EXPECT_EQ(Take(*b), Bodies(1));
  std::vector<std::string> again;
  ASSERT_TRUE(Eventually([&] {
    again = Take(*a);
    return !again.empty();
  }));
  EXPECT_EQ(again, Bodies(1));
  EXPECT_TRUE(Take(*b).empty());
}

TEST_F(BroadcastTest, BadInstancesAreRefused) {
  auto bad = broker_->CreateConsumer(
      "caches", "config",
      {.model = MessageModel::kBroadcasting, .instance = "a%b"});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  bad = broker_->CreateConsumer("caches", "config", {.instance = "x"});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace txmq
