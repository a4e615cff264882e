// Delayed delivery: a message with a deliver_at in the future is invisible
// until the broker's clock reaches it, then delivered exactly once, also
// across restarts and for committed transactional messages. Time is a
// ManualClock; nothing here sleeps to wait for a timer.

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

class DelayTest : public testing::BrokerFixture {
 protected:
  void SetUp() override {
    producer_options_.group = "order-service";
    BrokerFixture::SetUp();
    NewConsumer();
  }
  void CloseClients() override { consumer_.reset(); }
  void Reopen() {
    Open();
    NewConsumer();
  }
  void NewConsumer() {
    auto consumer = broker_->CreateConsumer("shipping", "orders");
    TXMQ_ASSERT_OK(consumer);
    consumer_ = *std::move(consumer);
  }

  absl::Time Now() const { return clock_->Now(); }

  Message At(std::string body, absl::Time deliver_at) {
    return Message{
        .topic = "orders", .body = std::move(body), .deliver_at = deliver_at};
  }

  // Receives (and acknowledges) everything the group can see now.
  std::vector<std::string> Drain() {
    std::vector<std::string> bodies;
    while (true) {
      auto batch = consumer_->Receive(100, absl::ZeroDuration());
      EXPECT_TRUE(batch.ok()) << batch.status();
      if (!batch.ok() || batch->empty()) break;
      for (const MessageView& m : *batch) {
        bodies.emplace_back(m.body());
        EXPECT_TRUE(consumer_->Ack(m).ok());
      }
    }
    return bodies;
  }

  // Drains until `n` bodies arrived (or 20 s passed).
  std::vector<std::string> DrainUntil(size_t n) {
    std::vector<std::string> bodies;
    Eventually([&] {
      for (std::string& b : Drain()) bodies.push_back(std::move(b));
      return bodies.size() >= n;
    });
    return bodies;
  }

  uint64_t Delayed() { return broker_->Stats().delayed_messages; }

  std::unique_ptr<Consumer> consumer_;
};

TEST_F(DelayTest, InvisibleUntilDueThenDeliveredOnce) {
  const absl::Time due = Now() + absl::Seconds(5);
  auto sent = producer_->Send(At("later", due));
  TXMQ_ASSERT_OK(sent);
  EXPECT_TRUE(sent->delayed());
  EXPECT_EQ(sent->offset, SendResult::kNotYetDelivered);
  EXPECT_EQ(sent->deliver_at, due);
  EXPECT_EQ(Delayed(), 1u);
  TXMQ_ASSERT_OK(producer_->Send({.topic = "orders", .body = "now"}));
  EXPECT_EQ(Drain(), std::vector<std::string>{"now"});

  clock_->Advance(absl::Seconds(5) - absl::Milliseconds(1));
  Settle();
  EXPECT_TRUE(Drain().empty());
  EXPECT_EQ(Delayed(), 1u);

  clock_->Advance(absl::Milliseconds(1));
  EXPECT_EQ(DrainUntil(1), std::vector<std::string>{"later"});
  EXPECT_TRUE(Eventually([&] { return Delayed() == 0; }));
  clock_->Advance(absl::Hours(1));
  Settle();
  EXPECT_TRUE(Drain().empty());  // exactly once
}

TEST_F(DelayTest, DeliveredMessageIsStampedWhenDelivered) {
  const absl::Time due = Now() + absl::Minutes(3);
  TXMQ_ASSERT_OK(producer_->Send(At("x", due)));
  clock_->Advance(absl::Minutes(3));
  std::vector<std::string> seen;
  ASSERT_TRUE(Eventually([&] {
    auto batch = consumer_->Receive(1, absl::ZeroDuration());
    if (!batch.ok() || batch->empty()) return false;
    EXPECT_EQ((*batch)[0].store_time(), due);
    EXPECT_LT((*batch)[0].born_time(), due);
    return true;
  }));
}

TEST_F(DelayTest, MillisecondPrecisionAndOrder) {
  const absl::Time t0 = Now();
  // Sent out of order; delivered by due time, then by send order.
  TXMQ_ASSERT_OK(producer_->Send(At("c", t0 + absl::Milliseconds(1001))));
  TXMQ_ASSERT_OK(producer_->Send(At("a", t0 + absl::Milliseconds(1000))));
  TXMQ_ASSERT_OK(producer_->Send(At("b", t0 + absl::Milliseconds(1000))));
  clock_->Advance(absl::Milliseconds(1000));
  std::vector<std::string> first = DrainUntil(2);
  std::sort(first.begin(), first.end());  // two queues: no order across them
  EXPECT_EQ(first, (std::vector<std::string>{"a", "b"}));
  Settle();
  EXPECT_TRUE(Drain().empty());
  clock_->Advance(absl::Milliseconds(1));
  EXPECT_EQ(DrainUntil(1), std::vector<std::string>{"c"});
}

TEST_F(DelayTest, SameKeyKeepsSendOrderWhenDueTogether) {
  const absl::Time due = Now() + absl::Seconds(1);
  std::vector<std::string> want;
  for (int i = 0; i < 50; ++i) {
    want.push_back("m" + std::to_string(i));
    TXMQ_ASSERT_OK(producer_->Send({.topic = "orders",
                                    .key = "k",
                                    .body = want.back(),
                                    .deliver_at = due}));
  }
  clock_->Advance(absl::Seconds(2));
  EXPECT_EQ(DrainUntil(50), want);
}

TEST_F(DelayTest, PastOrUnsetDeliverAtIsImmediate) {
  auto past = producer_->Send(At("past", Now() - absl::Hours(1)));
  auto now = producer_->Send(At("now", Now()));
  TXMQ_ASSERT_OK(past);
  TXMQ_ASSERT_OK(now);
  EXPECT_FALSE(past->delayed());
  EXPECT_FALSE(now->delayed());
  EXPECT_EQ(past->deliver_at, past->store_time);
  EXPECT_EQ(Drain(), (std::vector<std::string>{"past", "now"}));
  EXPECT_EQ(Delayed(), 0u);
}

TEST_F(DelayTest, UpToAYearAheadAndNoFurther) {
  TXMQ_EXPECT_OK(producer_->Send(At("90d", Now() + absl::Hours(24 * 90))));
  TXMQ_EXPECT_OK(producer_->Send(At("365d", Now() + absl::Hours(24 * 365))));
  auto too_far = producer_->Send(At("367d", Now() + absl::Hours(24 * 367)));
  EXPECT_EQ(too_far.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Delayed(), 2u);

  // Far-future timers wait on disk; a restart in between loses nothing.
  Reopen();
  EXPECT_EQ(Delayed(), 2u);
  clock_->Advance(absl::Hours(24 * 90) - absl::Milliseconds(1));
  Settle();
  EXPECT_TRUE(Drain().empty());
  clock_->Advance(absl::Milliseconds(1));
  EXPECT_EQ(DrainUntil(1), std::vector<std::string>{"90d"});
  clock_->Advance(absl::Hours(24 * 275));
  EXPECT_EQ(DrainUntil(1), std::vector<std::string>{"365d"});
  EXPECT_TRUE(Eventually([&] { return Delayed() == 0; }));
}

TEST_F(DelayTest, SurvivesRestartBeforeAndAfterDue) {
  TXMQ_ASSERT_OK(producer_->Send(At("early", Now() + absl::Seconds(10))));
  TXMQ_ASSERT_OK(producer_->Send(At("late", Now() + absl::Minutes(30))));
  Reopen();
  EXPECT_EQ(Delayed(), 2u);
  // Closed while "early" falls due: delivered on the next open.
  consumer_.reset();
  producer_.reset();
  broker_.reset();
  clock_->Advance(absl::Seconds(20));
  Reopen();
  EXPECT_EQ(DrainUntil(1), std::vector<std::string>{"early"});
  EXPECT_EQ(Delayed(), 1u);
  clock_->Advance(absl::Minutes(30));
  EXPECT_EQ(DrainUntil(1), std::vector<std::string>{"late"});
  Reopen();
  Settle();
  EXPECT_TRUE(Drain().empty());
  EXPECT_EQ(Delayed(), 0u);
}

TEST_F(DelayTest, BatchMixesDelayedAndImmediate) {
  auto sent = producer_->SendBatch(
      {At("now", absl::InfinitePast()), At("soon", Now() + absl::Seconds(1))});
  TXMQ_ASSERT_OK(sent);
  EXPECT_FALSE((*sent)[0].delayed());
  EXPECT_TRUE((*sent)[1].delayed());
  EXPECT_EQ(Drain(), std::vector<std::string>{"now"});
  clock_->Advance(absl::Seconds(1));
  EXPECT_EQ(DrainUntil(1), std::vector<std::string>{"soon"});
}

TEST_F(DelayTest, CommittedTransactionalMessageWaitsForItsTime) {
  auto txn = producer_->Begin(At("paid", Now() + absl::Minutes(1)));
  TXMQ_ASSERT_OK(txn);
  auto committed = (*txn)->Commit();
  TXMQ_ASSERT_OK(committed);
  EXPECT_TRUE(committed->delayed());
  // Commit returns before its write lands (transaction.h): wait for it.
  EXPECT_TRUE(Eventually([&] { return Delayed() == 1; }));
  Settle();
  EXPECT_TRUE(Drain().empty());
  clock_->Advance(absl::Minutes(1));
  EXPECT_EQ(DrainUntil(1), std::vector<std::string>{"paid"});

  // Committed after its time: delivered at once.
  auto late = producer_->Begin(At("late", Now() + absl::Seconds(1)));
  TXMQ_ASSERT_OK(late);
  clock_->Advance(absl::Seconds(2));
  auto done = (*late)->Commit();
  TXMQ_ASSERT_OK(done);
  EXPECT_FALSE(done->delayed());
  EXPECT_EQ(DrainUntil(1), std::vector<std::string>{"late"});
}

TEST_F(DelayTest, RolledBackDelayedMessageIsNeverDelivered) {
  auto txn = producer_->Begin(At("cancelled", Now() + absl::Seconds(1)));
  TXMQ_ASSERT_OK(txn);
  TXMQ_ASSERT_OK((*txn)->Rollback());
  clock_->Advance(absl::Seconds(2));
  Settle();
  EXPECT_TRUE(Drain().empty());
  EXPECT_EQ(Delayed(), 0u);
}

TEST_F(DelayTest, DeletedTopicDropsItsDelayedMessages) {
  TXMQ_ASSERT_OK(producer_->Send(At("orphan", Now() + absl::Seconds(1))));
  consumer_.reset();
  TXMQ_ASSERT_OK(broker_->DeleteTopic("orders"));
  clock_->Advance(absl::Seconds(1));
  EXPECT_TRUE(Eventually([&] { return Delayed() == 0; }));
  // A new topic of the same name does not inherit it.
  TXMQ_ASSERT_OK(broker_->CreateTopic("orders", {.queues = 2}));
  auto consumer = broker_->CreateConsumer("shipping", "orders");
  TXMQ_ASSERT_OK(consumer);
  consumer_ = *std::move(consumer);
  Settle();
  EXPECT_TRUE(Drain().empty());
}

}  // namespace
}  // namespace txmq
