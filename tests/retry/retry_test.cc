// Retries and dead letters (include/txmq/consumer.h, "Retries"): invisible
// time, ReconsumeLater, the back-off schedule, the dead-letter queue and
// re-driving it. Redelivery timing runs on a ManualClock: nothing here
// sleeps to let time pass.

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "broker_fixture.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::Eventually;

// What a test keeps of a received message.
struct Got {
  std::string body;
  MessageId id;
  uint32_t queue = 0;
  uint64_t offset = 0;
  absl::Time store_time;
  uint32_t reconsume_times = 0;
};

class RetryTest : public testing::BrokerFixture {
 protected:
  void CloseClients() override { consumers_.clear(); }

  Consumer& NewConsumer(ConsumerOptions options = {},
                        const std::string& group = "billing") {
    auto consumer = broker_->CreateConsumer(group, "orders", options);
    EXPECT_TRUE(consumer.ok()) << consumer.status();
    consumers_.push_back(*std::move(consumer));
    return *consumers_.back();
  }

  SendResult Send(const std::string& body) {
    auto sent = producer_->Send({.topic = "orders", .body = body});
    EXPECT_TRUE(sent.ok()) << sent.status();
    return sent.ok() ? *sent : SendResult();
  }

  // Receives what `consumer` can get now; `then` decides each message's
  // fate (default: acknowledge).
  std::vector<Got> Take(
      Consumer& consumer,
      const std::function<void(Consumer&, const MessageView&)>& then =
          [](Consumer& c, const MessageView& m) {
            EXPECT_TRUE(c.Ack(m).ok());
          }) {
    std::vector<Got> out;
    while (true) {
      auto batch = consumer.Receive(100, absl::ZeroDuration());
      EXPECT_TRUE(batch.ok()) << batch.status();
      if (!batch.ok() || batch->empty()) break;
      for (const MessageView& m : *batch) {
        out.push_back({std::string(m.body()), m.id(), m.queue(), m.offset(),
                       m.store_time(), m.reconsume_times()});
        then(consumer, m);
      }
    }
    return out;
  }

  // Waits (real time, for the broker's threads) until `consumer` received
  // `n` messages.
  std::vector<Got> TakeN(
      Consumer& consumer, size_t n,
      const std::function<void(Consumer&, const MessageView&)>& then =
          [](Consumer& c, const MessageView& m) {
            EXPECT_TRUE(c.Ack(m).ok());
          }) {
    std::vector<Got> out;
    Eventually([&] {
      for (Got& g : Take(consumer, then)) out.push_back(std::move(g));
      return out.size() >= n;
    });
    return out;
  }

  static void Keep(Consumer&, const MessageView&) {}
  static void Later(Consumer& c, const MessageView& m) {
    EXPECT_TRUE(c.ReconsumeLater(m).ok());
  }

  void Advance(absl::Duration d) { clock_->Advance(d); }

  std::vector<std::unique_ptr<Consumer>> consumers_;
};

TEST_F(RetryTest, UnacknowledgedMessageComesBackAfterInvisibleTimeAndBackoff) {
  Consumer& consumer = NewConsumer();
  const SendResult sent = Send("pay");
  std::vector<Got> first = Take(consumer, Keep);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].reconsume_times, 0u);

  Advance(absl::Seconds(30) - absl::Milliseconds(1));
  Settle();
  EXPECT_TRUE(Take(consumer).empty());
  EXPECT_EQ(broker_->Stats().redeliveries, 0u);
  Advance(absl::Milliseconds(1));  // invisible time over: copied, 10 s off
  ASSERT_TRUE(Eventually([&] { return broker_->Stats().redeliveries == 1; }));
  Settle();
  EXPECT_TRUE(Take(consumer).empty());

  Advance(absl::Seconds(10));
  std::vector<Got> again = TakeN(consumer, 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].body, "pay");
  EXPECT_EQ(again[0].reconsume_times, 1u);
  // The same message, as far as the consumer can tell.
  EXPECT_EQ(again[0].id, sent.id);
  EXPECT_EQ(again[0].queue, sent.queue);
  EXPECT_EQ(again[0].offset, sent.offset);
  EXPECT_EQ(again[0].store_time, sent.store_time);
  // The original counts as consumed; the acknowledged copy too.
  EXPECT_EQ(broker_->DescribeGroup("billing", "orders")->total(), 0u);
  Advance(absl::Hours(3));
  Settle();
  EXPECT_TRUE(Take(consumer).empty());
}

TEST_F(RetryTest, AcknowledgedInTimeIsNeverRedelivered) {
  Consumer& consumer = NewConsumer();
  for (int i = 0; i < 20; ++i) Send("m" + std::to_string(i));
  EXPECT_EQ(Take(consumer).size(), 20u);
  Advance(absl::Hours(5));
  Settle();
  EXPECT_TRUE(Take(consumer).empty());
  EXPECT_EQ(broker_->Stats().redeliveries, 0u);
}

TEST_F(RetryTest, OnlyTheUnacknowledgedPartOfABatchComesBack) {
  Consumer& consumer = NewConsumer();
  for (int i = 0; i < 10; ++i) Send(std::to_string(i));
  std::vector<std::string> kept;
  Take(consumer, [&](Consumer& c, const MessageView& m) {
    if (std::stoi(std::string(m.body())) % 2 == 0) {
      EXPECT_TRUE(c.Ack(m).ok());
    } else {
      kept.emplace_back(m.body());
    }
  });
  ASSERT_EQ(kept.size(), 5u);
  Advance(absl::Seconds(30));
  ASSERT_TRUE(Eventually([&] { return broker_->Stats().redeliveries == 5; }));
  Advance(absl::Seconds(10));
  std::vector<std::string> again;
  for (const Got& g : TakeN(consumer, 5)) again.push_back(g.body);
  std::sort(again.begin(), again.end());
  std::sort(kept.begin(), kept.end());
  EXPECT_EQ(again, kept);
}

TEST_F(RetryTest, ReconsumeLaterFollowsRocketMqScheduleByDefault) {
  Consumer& consumer = NewConsumer();
  Send("job");
  const std::vector<absl::Duration> schedule = {
      absl::Seconds(10), absl::Seconds(30), absl::Minutes(1), absl::Minutes(2),
      absl::Minutes(3)};
  ASSERT_EQ(Take(consumer, Later).size(), 1u);
  for (uint32_t n = 1; n <= schedule.size(); ++n) {
    ASSERT_TRUE(Eventually([&] { return broker_->Stats().redeliveries == n; }));
    Advance(schedule[n - 1] - absl::Milliseconds(1));
    Settle();
    EXPECT_TRUE(Take(consumer).empty()) << "redelivery " << n << " early";
    Advance(absl::Milliseconds(1));
    std::vector<Got> got = TakeN(consumer, 1, Later);
    ASSERT_EQ(got.size(), 1u) << "redelivery " << n;
    EXPECT_EQ(got[0].reconsume_times, n);
  }
}

TEST_F(RetryTest, SpentRetriesGoToTheDeadLetterQueue) {
  Consumer& consumer =
      NewConsumer({.retry = {.backoff = {absl::Seconds(1), absl::Seconds(2)},
                             .max_reconsume_times = 3}});
  const SendResult sent = Send("poison");
  ASSERT_EQ(Take(consumer, Later).size(), 1u);
  for (uint32_t n = 1; n <= 3; ++n) {
    ASSERT_TRUE(Eventually([&] { return broker_->Stats().redeliveries == n; }));
    Advance(n == 1 ? absl::Seconds(1) : absl::Seconds(2));  // the last repeats
    std::vector<Got> got = TakeN(consumer, 1, Later);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].reconsume_times, n);
  }
  // The 4th failure: dead-lettered at once, never delivered again.
  ASSERT_TRUE(Eventually([&] { return broker_->Stats().dead_lettered == 1; }));
  Advance(absl::Hours(3));
  Settle();
  EXPECT_TRUE(Take(consumer).empty());

  auto letters = broker_->ListDeadLetters("billing");
  TXMQ_ASSERT_OK(letters);
  ASSERT_EQ(letters->size(), 1u);
  const DeadLetter& letter = (*letters)[0];
  EXPECT_EQ(letter.id, sent.id);
  EXPECT_EQ(letter.topic, "orders");
  EXPECT_EQ(letter.queue, sent.queue);
  EXPECT_EQ(letter.offset, sent.offset);
  EXPECT_EQ(letter.body, "poison");
  EXPECT_EQ(letter.reconsume_times, 3u);
  EXPECT_EQ(letter.store_time, sent.store_time);
  EXPECT_GT(letter.dead_time, sent.store_time);
  EXPECT_EQ(broker_->DescribeGroup("billing", "orders")->total(), 0u);
}

TEST_F(RetryTest, ZeroRetriesDeadLetterTheFirstFailure) {
  Consumer& consumer = NewConsumer({.retry = {.max_reconsume_times = 0}});
  Send("x");
  ASSERT_EQ(Take(consumer, Later).size(), 1u);
  ASSERT_TRUE(Eventually([&] { return broker_->Stats().dead_lettered == 1; }));
  EXPECT_EQ(broker_->Stats().redeliveries, 0u);
}

TEST_F(RetryTest, RedriveGivesDeadLettersBackToTheirGroupOnly) {
  Consumer& billing = NewConsumer({.retry = {.max_reconsume_times = 0}});
  Consumer& audit = NewConsumer({}, "audit");
  Send("a");
  Send("b");
  ASSERT_EQ(Take(billing, Later).size(), 2u);
  EXPECT_EQ(Take(audit).size(), 2u);
  ASSERT_TRUE(Eventually([&] { return broker_->Stats().dead_lettered == 2; }));

  auto result = broker_->RedriveDeadLetters("billing", 1);
  TXMQ_ASSERT_OK(result);
  EXPECT_EQ(result->redriven, 1u);
  EXPECT_EQ(broker_->ListDeadLetters("billing")->size(), 1u);
  result = broker_->RedriveDeadLetters("billing");
  TXMQ_ASSERT_OK(result);
  EXPECT_EQ(result->redriven, 1u);
  EXPECT_TRUE(broker_->ListDeadLetters("billing")->empty());
  EXPECT_EQ(broker_->RedriveDeadLetters("billing")->redriven, 0u);

  std::vector<Got> again = TakeN(billing, 2);
  std::vector<std::string> bodies;
  for (const Got& g : again) {
    bodies.push_back(g.body);
    EXPECT_EQ(g.reconsume_times, 0u);  // a fresh set of retries
  }
  std::sort(bodies.begin(), bodies.end());
  EXPECT_EQ(bodies, (std::vector<std::string>{"a", "b"}));
  Settle();
  EXPECT_TRUE(Take(audit).empty());  // the other group is not bothered

  EXPECT_EQ(broker_->ListDeadLetters("nobody").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(broker_->ListDeadLetters("billing", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broker_->RedriveDeadLetters("%bad").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(RetryTest, ChangeInvisibleDurationKeepsOneMessageLonger) {
  Consumer& consumer = NewConsumer();
  Send("slow");
  Send("fast");
  std::vector<Got> got = Take(consumer, [](Consumer& c, const MessageView& m) {
    if (m.body() == "slow") {
      EXPECT_TRUE(c.ChangeInvisibleDuration(m, absl::Minutes(5)).ok());
    }
  });
  ASSERT_EQ(got.size(), 2u);
  Advance(absl::Seconds(30));  // "fast" expires, "slow" does not
  ASSERT_TRUE(Eventually([&] { return broker_->Stats().redeliveries == 1; }));
  Advance(absl::Seconds(10));
  std::vector<Got> again = TakeN(consumer, 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].body, "fast");
  Advance(absl::Minutes(5));
  ASSERT_TRUE(Eventually([&] { return broker_->Stats().redeliveries == 2; }));
  Advance(absl::Seconds(10));
  again = TakeN(consumer, 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].body, "slow");
}

TEST_F(RetryTest, MisuseIsRefusedClearly) {
  Consumer& consumer = NewConsumer();
  Send("x");
  auto batch = consumer.Receive(10, absl::ZeroDuration());
  TXMQ_ASSERT_OK(batch);
  ASSERT_EQ(batch->size(), 1u);
  const MessageView& m = (*batch)[0];
  EXPECT_EQ(consumer.ChangeInvisibleDuration(m, absl::ZeroDuration()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(consumer.ReconsumeLater(m, -absl::Seconds(1)).code(),
            absl::StatusCode::kInvalidArgument);
  TXMQ_EXPECT_OK(consumer.ReconsumeLater(m));
  EXPECT_EQ(consumer.ReconsumeLater(m).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(consumer.ChangeInvisibleDuration(m, absl::Minutes(1)).code(),
            absl::StatusCode::kFailedPrecondition);
  Send("y");
  auto next = consumer.Receive(10, absl::ZeroDuration());
  TXMQ_ASSERT_OK(next);
  ASSERT_EQ(next->size(), 1u);
  TXMQ_EXPECT_OK(consumer.Ack((*next)[0]));
  EXPECT_EQ(consumer.ReconsumeLater((*next)[0]).code(),
            absl::StatusCode::kFailedPrecondition);

  auto bad = broker_->CreateConsumer(
      "g", "orders", {.invisible_duration = absl::ZeroDuration()});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  bad = broker_->CreateConsumer("g", "orders",
                                {.retry = {.backoff = {-absl::Seconds(1)}}});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RetryTest, ReconsumeLaterWithAZeroDelayComesBackAtOnce) {
  Consumer& consumer = NewConsumer();
  Send("now");
  // One Receive (a drain could already meet the redelivery).
  auto batch = consumer.Receive(10, absl::ZeroDuration());
  TXMQ_ASSERT_OK(batch);
  ASSERT_EQ(batch->size(), 1u);
  TXMQ_ASSERT_OK(consumer.ReconsumeLater((*batch)[0], absl::ZeroDuration()));
  std::vector<Got> again = TakeN(consumer, 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].reconsume_times, 1u);
}

TEST_F(RetryTest, InfiniteInvisibleDurationWaitsForARestart) {
  Consumer& consumer =
      NewConsumer({.invisible_duration = absl::InfiniteDuration()});
  Send("x");
  ASSERT_EQ(Take(consumer, Keep).size(), 1u);
  Advance(absl::Hours(24 * 30));
  Settle();
  EXPECT_TRUE(Take(consumer).empty());
  EXPECT_EQ(broker_->Stats().redeliveries, 0u);
  Open();
  Consumer& again = NewConsumer();
  std::vector<Got> got = Take(again);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].reconsume_times, 0u);
}

TEST_F(RetryTest, ADepartingConsumerHandsItsMessagesBackAtOnce) {
  Consumer& stays = NewConsumer();
  {
    auto leaves = broker_->CreateConsumer("billing", "orders");
    TXMQ_ASSERT_OK(leaves);
    for (int i = 0; i < 10; ++i) Send(std::to_string(i));
    auto batch = (*leaves)->Receive(100, absl::ZeroDuration());
    TXMQ_ASSERT_OK(batch);
    ASSERT_EQ(batch->size(), 10u);
    for (const MessageView& m : *batch) {
      if (m.body() == "0" || m.body() == "7") {
        TXMQ_ASSERT_OK((*leaves)->Ack(m));
      }
    }
  }  // destroyed: its 8 unacknowledged messages go back, no clock move
  std::vector<std::string> got;
  for (const Got& g : Take(stays)) {
    got.push_back(g.body);
    EXPECT_EQ(g.reconsume_times, 0u);
  }
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got,
            (std::vector<std::string>{"1", "2", "3", "4", "5", "6", "8", "9"}));
  EXPECT_EQ(broker_->DescribeGroup("billing", "orders")->total(), 0u);
}

TEST_F(RetryTest, PendingRetriesSurviveARestart) {
  {
    Consumer& consumer = NewConsumer();
    Send("x");
    ASSERT_EQ(Take(consumer, Later).size(), 1u);
    ASSERT_TRUE(Eventually([&] { return broker_->Stats().redeliveries == 1; }));
  }
  Open();
  Consumer& consumer = NewConsumer();
  Settle();
  EXPECT_TRUE(Take(consumer).empty());  // the original was consumed
  Advance(absl::Seconds(10));
  std::vector<Got> got = TakeN(consumer, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].reconsume_times, 1u);
}

TEST_F(RetryTest, DeadLettersCanBeKeptLonger) {
  NewConsumer();
  TXMQ_ASSERT_OK(
      broker_->SetTopicRetention("%DLQ%billing", absl::Hours(24 * 30)));
  EXPECT_EQ(broker_->DescribeTopic("%DLQ%billing")->retention,
            absl::Hours(24 * 30));
  EXPECT_EQ(broker_->SetTopicRetention("%DLQ%nobody", absl::Hours(1)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(RetryTest, DeletingTheTopicDeletesItsRetryTopics) {
  NewConsumer();
  ASSERT_TRUE(broker_->DescribeTopic("%RETRY%billing%orders").ok());
  EXPECT_TRUE(broker_->DescribeTopic("%DLQ%billing").ok());
  consumers_.clear();
  TXMQ_ASSERT_OK(broker_->DeleteTopic("orders"));
  EXPECT_EQ(broker_->DescribeTopic("%RETRY%billing%orders").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(broker_->DescribeTopic("%DLQ%billing").ok());  // the group's
}

TEST_F(RetryTest, TagFiltersApplyToRedeliveriesToo) {
  Consumer& consumer = NewConsumer({.tag_filter = "paid"});
  TXMQ_ASSERT_OK(
      producer_->Send({.topic = "orders", .tags = {"paid"}, .body = "p"}));
  TXMQ_ASSERT_OK(
      producer_->Send({.topic = "orders", .tags = {"new"}, .body = "n"}));
  std::vector<Got> got = Take(consumer, Later);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(Eventually([&] { return broker_->Stats().redeliveries == 1; }));
  Advance(absl::Seconds(10));
  got = TakeN(consumer, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, "p");
}

}  // namespace
}  // namespace txmq
