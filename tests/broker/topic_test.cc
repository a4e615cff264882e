// Topic administration: create, list, describe, delete, and their errors.

#include <string>

#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::TempDir;

class TopicTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto broker = Broker::Open(tmp_.path(), options_);
    TXMQ_ASSERT_OK(broker);
    broker_ = *std::move(broker);
  }
  TempDir tmp_;
  Options options_;
  std::unique_ptr<Broker> broker_;
};

TEST_F(TopicTest, CreateListDescribe) {
  TXMQ_ASSERT_OK(broker_->CreateTopic("orders", {.queues = 3}));
  TXMQ_ASSERT_OK(broker_->CreateTopic("audit"));
  std::vector<TopicInfo> topics = broker_->ListTopics();
  ASSERT_EQ(topics.size(), 2u);
  EXPECT_EQ(topics[0].name, "audit");
  EXPECT_EQ(topics[0].queue_count, 4u);  // the default
  EXPECT_EQ(topics[1].name, "orders");
  auto info = broker_->DescribeTopic("orders");
  TXMQ_ASSERT_OK(info);
  EXPECT_EQ(info->queue_count, 3u);
  ASSERT_EQ(info->queues.size(), 3u);
  EXPECT_EQ(info->message_count(), 0u);
  EXPECT_LE(absl::Now() - info->create_time, absl::Minutes(1));
}

TEST_F(TopicTest, TopicsSurviveReopen) {
  TXMQ_ASSERT_OK(broker_->CreateTopic("orders", {.queues = 5}));
  broker_.reset();
  auto broker = Broker::Open(tmp_.path());
  TXMQ_ASSERT_OK(broker);
  auto info = (*broker)->DescribeTopic("orders");
  TXMQ_ASSERT_OK(info);
  EXPECT_EQ(info->queue_count, 5u);
}

TEST_F(TopicTest, BadCreatesAreRefused) {
  TXMQ_ASSERT_OK(broker_->CreateTopic("orders"));
  EXPECT_EQ(broker_->CreateTopic("orders").code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(broker_->CreateTopic("bad name").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broker_->CreateTopic("%DLQ%group").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broker_->CreateTopic("q0", {.queues = 0}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broker_->CreateTopic("q", {.queues = 1025}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broker_->ListTopics().size(), 1u);
}

TEST_F(TopicTest, UnknownTopicsAreNotFound) {
  EXPECT_EQ(broker_->DescribeTopic("nope").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(broker_->DeleteTopic("nope").code(), absl::StatusCode::kNotFound);
  absl::Status s = broker_->CreateConsumer("g", "nope").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(s.message()).find("create it with CreateTopic"),
            std::string::npos);
}

TEST_F(TopicTest, QueueBudgetIsEnforcedAndReturnedOnDelete) {
  broker_.reset();
  options_.max_queues = 8;
  auto broker = Broker::Open(tmp_.path(), options_);
  TXMQ_ASSERT_OK(broker);
  TXMQ_ASSERT_OK((*broker)->CreateTopic("a", {.queues = 6}));
  absl::Status s = (*broker)->CreateTopic("b", {.queues = 4});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(std::string(s.message()).find("max_queues"), std::string::npos);
  TXMQ_ASSERT_OK((*broker)->DeleteTopic("a"));
  // The deleted tables are closed in the background; the budget comes back.
  for (int i = 0; i < 20; ++i) {
    TXMQ_ASSERT_OK(
        (*broker)->CreateTopic("c" + std::to_string(i), {.queues = 8}));
    TXMQ_ASSERT_OK((*broker)->DeleteTopic("c" + std::to_string(i)));
  }
  TXMQ_EXPECT_OK((*broker)->CreateTopic("b", {.queues = 8}));
}

TEST_F(TopicTest, DeleteRemovesMessagesOffsetsAndStopsUsers) {
  TXMQ_ASSERT_OK(broker_->CreateTopic("t", {.queues = 2}));
  auto producer = broker_->CreateProducer();
  for (int i = 0; i < 10; ++i) {
    TXMQ_ASSERT_OK((*producer)->Send({.topic = "t", .body = "old"}));
  }
  {
    auto consumer = broker_->CreateConsumer("g", "t");
    TXMQ_ASSERT_OK(consumer);
    auto batch = (*consumer)->Receive(3, absl::ZeroDuration());
    TXMQ_ASSERT_OK(batch);
    TXMQ_ASSERT_OK((*consumer)->Ack(*batch));
    TXMQ_ASSERT_OK((*consumer)->Flush());
    *batch = ReceivedBatch();  // let the snapshot go

    TXMQ_ASSERT_OK(broker_->DeleteTopic("t"));
    EXPECT_EQ((*consumer)->Receive(1, absl::ZeroDuration()).status().code(),
              absl::StatusCode::kNotFound);
    EXPECT_EQ((*consumer)->Ack(0, 0).code(), absl::StatusCode::kNotFound);
  }
  EXPECT_EQ((*producer)->Send({.topic = "t"}).status().code(),
            absl::StatusCode::kNotFound);

  // A new topic of the same name starts empty, and the group starts over.
  TXMQ_ASSERT_OK(broker_->CreateTopic("t", {.queues = 2}));
  TXMQ_ASSERT_OK((*producer)->Send({.topic = "t", .body = "new"}));
  producer->reset();
  broker_.reset();
  auto broker = Broker::Open(tmp_.path());
  TXMQ_ASSERT_OK(broker);
  auto info = (*broker)->DescribeTopic("t");
  TXMQ_ASSERT_OK(info);
  EXPECT_EQ(info->message_count(), 1u);
  auto consumer = (*broker)->CreateConsumer("g", "t");
  TXMQ_ASSERT_OK(consumer);
  auto batch = (*consumer)->Receive(10, absl::ZeroDuration());
  TXMQ_ASSERT_OK(batch);
  ASSERT_EQ(batch->size(), 1u);
  EXPECT_EQ((*batch)[0].body(), "new");
}

}  // namespace
}  // namespace txmq
