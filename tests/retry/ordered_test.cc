// Ordered consumers (ConsumerOptions::ordered): one message per queue in
// flight across the group, append order, and a failure that blocks its
// queue instead of reordering it. Time is a ManualClock.

#include <algorithm>
#include <future>
#include <map>
#include <string>
#include <vector>

#include "broker_fixture.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::Eventually;

class OrderedTest : public testing::BrokerFixture {
 protected:
  std::unique_ptr<Consumer> NewConsumer(RetryPolicy retry = {
                                            .backoff = {absl::Seconds(1)}}) {
    auto consumer = broker_->CreateConsumer(
        "shipping", "orders", {.retry = std::move(retry), .ordered = true});
    EXPECT_TRUE(consumer.ok()) << consumer.status();
    return consumer.ok() ? *std::move(consumer) : nullptr;
  }

  void Send(const std::string& key, const std::string& body) {
    TXMQ_EXPECT_OK(
        producer_->Send({.topic = "orders", .key = key, .body = body}));
  }

  // One Receive: the bodies it returned (not acknowledged).
  std::vector<std::string> Peek(Consumer& consumer,
                                std::vector<MessageView>* views = nullptr,
                                ReceivedBatch* keep = nullptr) {
    auto batch = consumer.Receive(100, absl::ZeroDuration());
    EXPECT_TRUE(batch.ok()) << batch.status();
    std::vector<std::string> bodies;
    if (!batch.ok()) return bodies;
    for (const MessageView& m : *batch) bodies.emplace_back(m.body());
    if (views != nullptr) *views = batch->messages();
    if (keep != nullptr) *keep = *std::move(batch);
    return bodies;
  }
};

TEST_F(OrderedTest, OneMessagePerQueueInFlightInAppendOrder) {
  // Keys "a" and "b" land on different queues of two (checked below).
  for (int i = 0; i < 10; ++i) {
    Send("a", "a" + std::to_string(i));
    Send("b", "b" + std::to_string(i));
  }
  auto consumer = NewConsumer();
  std::map<char, std::vector<std::string>> seen;
  for (int round = 0; round < 10; ++round) {
    ReceivedBatch batch;
    std::vector<MessageView> views;
    std::vector<std::string> got = Peek(*consumer, &views, &batch);
    ASSERT_EQ(got.size(), 2u) << "one per queue, round " << round;
    EXPECT_NE(views[0].queue(), views[1].queue());
    EXPECT_TRUE(Peek(*consumer).empty()) << "nothing more until acknowledged";
    for (const std::string& body : got) seen[body[0]].push_back(body);
    TXMQ_ASSERT_OK(consumer->Ack(batch));
  }
  for (char key : {'a', 'b'}) {
    ASSERT_EQ(seen[key].size(), 10u);
    for (int i = 0; i < 10; ++i) {
      EXPECT_EQ(seen[key][i], std::string(1, key) + std::to_string(i));
    }
  }
}

TEST_F(OrderedTest, TheGroupHasOneMessageOfAQueueInFlight) {
  Send("a", "a0");
  Send("a", "a1");
  auto first = NewConsumer();
  auto second = NewConsumer();
  std::vector<MessageView> views;
  ReceivedBatch batch;
  EXPECT_EQ(Peek(*first, &views, &batch), std::vector<std::string>{"a0"});
  EXPECT_TRUE(Peek(*second).empty());
  TXMQ_ASSERT_OK(first->Ack(views[0]));
  EXPECT_EQ(Peek(*second), std::vector<std::string>{"a1"});
}

TEST_F(OrderedTest, AFailureBlocksItsQueueInsteadOfReorderingIt) {
  Send("a", "a0");
  Send("a", "a1");
  Send("b", "b0");
  auto consumer = NewConsumer();
  std::vector<MessageView> views;
  ReceivedBatch batch;
  std::vector<std::string> got = Peek(*consumer, &views, &batch);
  std::sort(got.begin(), got.end());
  ASSERT_EQ(got, (std::vector<std::string>{"a0", "b0"}));
  for (const MessageView& m : views) {
    if (m.body() == "a0") {
      TXMQ_ASSERT_OK(consumer->ReconsumeLater(m));
    } else {
      TXMQ_ASSERT_OK(consumer->Ack(m));
    }
  }
  batch = ReceivedBatch();
  Settle();
  EXPECT_TRUE(Peek(*consumer).empty()) << "a1 must wait behind a0";
  clock_->Advance(absl::Seconds(1));
  got = Peek(*consumer, &views, &batch);
  ASSERT_EQ(got, std::vector<std::string>{"a0"});
  EXPECT_EQ(views[0].reconsume_times(), 1u);
  TXMQ_ASSERT_OK(consumer->Ack(views[0]));
  EXPECT_EQ(Peek(*consumer), std::vector<std::string>{"a1"});
  EXPECT_EQ(broker_->Stats().redeliveries, 0u);  // no copies in this mode
}

TEST_F(OrderedTest, AnExpiredInvisibleTimeBlocksTheQueueToo) {
  Send("a", "a0");
  Send("a", "a1");
  auto consumer = NewConsumer();
  {
    ReceivedBatch batch;
    EXPECT_EQ(Peek(*consumer, nullptr, &batch), std::vector<std::string>{"a0"});
  }                                    // not acknowledged
  clock_->Advance(absl::Seconds(30));  // the invisible time: a failure
  Settle();
  EXPECT_TRUE(Peek(*consumer).empty());
  clock_->Advance(absl::Seconds(1));  // the back-off
  std::vector<MessageView> views;
  ReceivedBatch batch;
  ASSERT_TRUE(Eventually([&] {
    return Peek(*consumer, &views, &batch) == std::vector<std::string>{"a0"};
  }));
  EXPECT_EQ(views[0].reconsume_times(), 1u);
  TXMQ_ASSERT_OK(consumer->Ack(views[0]));
  EXPECT_EQ(Peek(*consumer), std::vector<std::string>{"a1"});
}

TEST_F(OrderedTest, SpentRetriesDeadLetterTheHeadAndTheQueueMovesOn) {
  Send("a", "poison");
  Send("a", "next");
  auto consumer =
      NewConsumer({.backoff = {absl::Seconds(1)}, .max_reconsume_times = 2});
  for (uint32_t n = 0; n <= 2; ++n) {
    std::vector<MessageView> views;
    ReceivedBatch batch;
    ASSERT_TRUE(Eventually([&] {
      return Peek(*consumer, &views, &batch) ==
             std::vector<std::string>{"poison"};
    })) << "delivery "
        << n;
    EXPECT_EQ(views[0].reconsume_times(), n);
    TXMQ_ASSERT_OK(consumer->ReconsumeLater(views[0]));
    clock_->Advance(absl::Seconds(1));
  }
  std::vector<std::string> got;
  ASSERT_TRUE(Eventually([&] {
    got = Peek(*consumer);
    return !got.empty();
  }));
  EXPECT_EQ(got, std::vector<std::string>{"next"});
  auto letters = broker_->ListDeadLetters("shipping");
  TXMQ_ASSERT_OK(letters);
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_EQ((*letters)[0].body, "poison");
  EXPECT_EQ((*letters)[0].reconsume_times, 2u);
}

TEST_F(OrderedTest, AWaitingReceiveWakesWhenTheBlockEnds) {
  Send("a", "a0");
  auto consumer = NewConsumer();
  {
    std::vector<MessageView> views;
    ReceivedBatch batch;
    ASSERT_EQ(Peek(*consumer, &views, &batch), std::vector<std::string>{"a0"});
    TXMQ_ASSERT_OK(
        consumer->ReconsumeLater(views[0], absl::Seconds(5)));  // blocks 5 s
  }
  auto waiting = std::async(std::launch::async, [&] {
    auto batch = consumer->Receive(10, absl::Seconds(20));
    return batch.ok() ? batch->size() : size_t{0};
  });
  Settle();
  clock_->Advance(absl::Seconds(5));
  EXPECT_EQ(waiting.get(), 1u);
}

TEST_F(OrderedTest, ADepartingConsumerHandsTheHeadBack) {
  Send("a", "a0");
  Send("a", "a1");
  auto stays = NewConsumer();
  {
    auto leaves = NewConsumer();
    ReceivedBatch batch;
    EXPECT_EQ(Peek(*leaves, nullptr, &batch), std::vector<std::string>{"a0"});
    EXPECT_TRUE(Peek(*stays).empty());
  }
  std::vector<MessageView> views;
  ReceivedBatch batch;
  EXPECT_EQ(Peek(*stays, &views, &batch), std::vector<std::string>{"a0"});
  EXPECT_EQ(views[0].reconsume_times(), 0u);
  TXMQ_ASSERT_OK(stays->Ack(views[0]));
  EXPECT_EQ(Peek(*stays), std::vector<std::string>{"a1"});
}

}  // namespace
}  // namespace txmq
