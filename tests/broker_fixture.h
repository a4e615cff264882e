// A test fixture with a broker in a temporary directory on a ManualClock,
// one topic, and a producer; Open() reopens it (a restart).

#ifndef TXMQ_TESTS_BROKER_FIXTURE_H_
#define TXMQ_TESTS_BROKER_FIXTURE_H_

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq::testing {

class BrokerFixture : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  // Closes the broker (after CloseClients) and opens it again, creating
  // topic_ when it is missing.
  void Open() {
    CloseClients();
    producer_.reset();
    broker_.reset();
    Options options = options_;
    options.clock = clock_;
    auto broker = Broker::Open(tmp_.path(), options);
    TXMQ_ASSERT_OK(broker);
    broker_ = *std::move(broker);
    if (!broker_->DescribeTopic(topic_).ok()) {
      TXMQ_ASSERT_OK(broker_->CreateTopic(topic_, {.queues = queues_}));
    }
    auto producer = broker_->CreateProducer(producer_options_);
    TXMQ_ASSERT_OK(producer);
    producer_ = *std::move(producer);
  }

  // Destroys what the test made from the broker (consumers, batches), which
  // must go before it.
  virtual void CloseClients() {}

  // A negative check: gives the broker's threads a moment to do what they
  // must not. Cannot fail spuriously; at worst it passes late.
  static void Settle() { absl::SleepFor(absl::Milliseconds(50)); }

  TempDir tmp_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  Options options_;
  std::string topic_ = "orders";
  uint32_t queues_ = 2;
  ProducerOptions producer_options_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Producer> producer_;
};

}  // namespace txmq::testing

#endif  // TXMQ_TESTS_BROKER_FIXTURE_H_
