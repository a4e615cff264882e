// Host tables and local transactions (include/txmq/local_transaction.h):
// all or nothing, acknowledgements that hold across restarts, and the
// thread rules inside the callback. Kill -9: tests/crash/points_crash_test.

#include <stdexcept>
#include <string>
#include <vector>

#include "broker_fixture.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::Eventually;

class LocalTransactionTest : public testing::BrokerFixture {
 protected:
  void SetUp() override {
    BrokerFixture::SetUp();
    auto table = broker_->OpenTable("balances");
    TXMQ_ASSERT_OK(table);
    balances_ = *table;
    if (!broker_->DescribeTopic("awarded").ok()) {
      TXMQ_ASSERT_OK(broker_->CreateTopic("awarded", {.queues = 1}));
    }
  }
  void CloseClients() override {
    batch_ = ReceivedBatch();
    consumer_.reset();
  }
  void Reopen() {
    Open();
    auto table = broker_->OpenTable("balances");
    TXMQ_ASSERT_OK(table);
    balances_ = *table;
  }

  Consumer& TheConsumer() {
    if (consumer_ == nullptr) {
      auto consumer = broker_->CreateConsumer("points", "orders");
      EXPECT_TRUE(consumer.ok()) << consumer.status();
      consumer_ = *std::move(consumer);
    }
    return *consumer_;
  }

  // Receives what the group can get now into batch_.
  const ReceivedBatch& Receive() {
    auto batch = TheConsumer().Receive(100, absl::ZeroDuration());
    EXPECT_TRUE(batch.ok()) << batch.status();
    batch_ = batch.ok() ? *std::move(batch) : ReceivedBatch();
    return batch_;
  }

  std::optional<std::string> Balance(const std::string& user) {
    std::optional<std::string> out;
    TXMQ_EXPECT_OK(broker_->ReadTables([&](const LocalReader& r) {
      auto v = r.Get(balances_, user);
      if (!v.ok()) return v.status();
      if (v->has_value()) out = std::string(**v);
      return absl::OkStatus();
    }));
    return out;
  }

  uint64_t Stored(const std::string& topic) {
    return broker_->DescribeTopic(topic)->message_count();
  }

  // Awards the points of `m` in one local transaction.
  absl::Status Award(const MessageView& m, int points = 10) {
    return broker_->RunInTransaction([&](LocalTransaction& tx) -> absl::Status {
      const std::string user(m.key());
      auto old = tx.Get(balances_, user);
      if (!old.ok()) return old.status();
      const int balance =
          (old->has_value() ? std::stoi(std::string(**old)) : 0);
      if (auto s = tx.Put(balances_, user, std::to_string(balance + points));
          !s.ok()) {
        return s;
      }
      auto sent = tx.Send({.topic = "awarded", .key = user, .body = "10"});
      if (!sent.ok()) return sent.status();
      return tx.Ack(TheConsumer(), m);
    });
  }

  LocalTable balances_;
  std::unique_ptr<Consumer> consumer_;
  ReceivedBatch batch_;
};

TEST_F(LocalTransactionTest, TablesReadWriteAndScan) {
  TXMQ_ASSERT_OK(broker_->RunInTransaction([&](LocalTransaction& tx) {
    for (const char* k : {"a/1", "a/2", "b/1"}) {
      if (auto s = tx.Put(balances_, k, std::string("v") + k); !s.ok()) {
        return s;
      }
    }
    auto got = tx.Get(balances_, "a/2");  // sees its own writes
    EXPECT_TRUE(got.ok() && got->has_value() && **got == "va/2");
    return absl::OkStatus();
  }));
  std::vector<std::string> keys;
  TXMQ_ASSERT_OK(broker_->ReadTables([&](const LocalReader& r) {
    return r.Scan(balances_, "a/", [&](std::string_view k, std::string_view v) {
      keys.emplace_back(k);
      EXPECT_EQ(v, "v" + std::string(k));
      return true;
    });
  }));
  EXPECT_EQ(keys, (std::vector<std::string>{"a/1", "a/2"}));
  TXMQ_ASSERT_OK(broker_->RunInTransaction([&](LocalTransaction& tx) {
    EXPECT_TRUE(*tx.Delete(balances_, "a/1"));
    EXPECT_FALSE(*tx.Delete(balances_, "a/1"));
    return absl::OkStatus();
  }));
  EXPECT_EQ(Balance("a/1"), std::nullopt);
  EXPECT_EQ(Balance("b/1"), "vb/1");
  // Opening again gives the same table; it survives a restart.
  auto again = broker_->OpenTable("balances");
  TXMQ_ASSERT_OK(again);
  Reopen();
  EXPECT_EQ(Balance("b/1"), "vb/1");
}

TEST_F(LocalTransactionTest, BadTablesKeysAndNamesAreRefused) {
  EXPECT_EQ(broker_->OpenTable("no/slash").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broker_->OpenTable("").status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status s = broker_->RunInTransaction([&](LocalTransaction& tx) {
    EXPECT_EQ(tx.Put(LocalTable(), "k", "v").code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(tx.Put(balances_, "", "v").code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(tx.Put(balances_, std::string(512, 'k'), "v").code(),
              absl::StatusCode::kInvalidArgument);
    return absl::OkStatus();
  });
  TXMQ_EXPECT_OK(s);
  EXPECT_EQ(broker_->RunInTransaction(nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(LocalTransactionTest, AFailedCallbackWritesNothing) {
  TXMQ_ASSERT_OK(producer_->Send({.topic = "orders", .key = "ann"}));
  ASSERT_EQ(Receive().size(), 1u);
  const MessageView m = batch_[0];
  absl::Status s = broker_->RunInTransaction([&](LocalTransaction& tx) {
    EXPECT_TRUE(tx.Put(balances_, "ann", "10").ok());
    EXPECT_TRUE(tx.Send({.topic = "awarded", .body = "x"}).ok());
    EXPECT_TRUE(tx.Ack(TheConsumer(), m).ok());
    return absl::AbortedError("the points service changed its mind");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  s = broker_->RunInTransaction([&](LocalTransaction& tx) -> absl::Status {
    EXPECT_TRUE(tx.Put(balances_, "ann", "20").ok());
    EXPECT_TRUE(tx.Send({.topic = "awarded", .body = "y"}).ok());
    throw std::runtime_error("boom");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Balance("ann"), std::nullopt);
  EXPECT_EQ(Stored("awarded"), 0u);
  // Offsets stay gapless after the rollbacks.
  auto next = producer_->Send({.topic = "awarded", .body = "z"});
  TXMQ_ASSERT_OK(next);
  EXPECT_EQ(next->offset, 0u);
  // The message was not acknowledged: it is processed now.
  TXMQ_ASSERT_OK(Award(m));
  EXPECT_EQ(Balance("ann"), "10");
}

TEST_F(LocalTransactionTest, AcknowledgementsHoldAcrossARestartWithoutFlush) {
  for (const char* user : {"ann", "bob", "cid", "dan"}) {
    TXMQ_ASSERT_OK(producer_->Send({.topic = "orders", .key = user}));
  }
  ASSERT_EQ(Receive().size(), 4u);
  // Award "bob" and "dan" in local transactions; "ann" and "cid" fail
  // before they are processed.
  for (const MessageView& m : batch_) {
    if (m.key() == "bob" || m.key() == "dan") TXMQ_ASSERT_OK(Award(m));
  }
  EXPECT_EQ(Stored("awarded"), 2u);
  Reopen();  // no Flush: the committed offsets on disk are still 0
  std::vector<std::string> again;
  for (const MessageView& m : Receive()) {
    again.emplace_back(m.key());
    TXMQ_ASSERT_OK(Award(m));
  }
  std::sort(again.begin(), again.end());
  EXPECT_EQ(again, (std::vector<std::string>{"ann", "cid"}));
  for (const char* user : {"ann", "bob", "cid", "dan"}) {
    EXPECT_EQ(Balance(user), "10") << user;
  }
  EXPECT_EQ(Stored("awarded"), 4u);
  EXPECT_EQ(broker_->DescribeGroup("points", "orders")->total(), 0u);
  Reopen();
  EXPECT_TRUE(Receive().empty());
}

TEST_F(LocalTransactionTest, AnAcknowledgedOrExpiredMessageCannotBeAckedAgain) {
  TXMQ_ASSERT_OK(producer_->Send({.topic = "orders", .key = "ann"}));
  TXMQ_ASSERT_OK(producer_->Send({.topic = "orders", .key = "bob"}));
  ASSERT_EQ(Receive().size(), 2u);
  const MessageView first = batch_[0], second = batch_[1];
  TXMQ_ASSERT_OK(Award(first));
  EXPECT_EQ(Award(first).code(), absl::StatusCode::kFailedPrecondition);
  clock_->Advance(absl::Seconds(30));  // second's invisible time runs out
  ASSERT_TRUE(Eventually([&] { return broker_->Stats().redeliveries == 1; }));
  EXPECT_EQ(Award(second).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Balance(std::string(second.key())), std::nullopt);
  clock_->Advance(absl::Seconds(10));
  ASSERT_TRUE(Eventually([&] { return Receive().size() == 1; }));
  TXMQ_ASSERT_OK(Award(batch_[0]));  // the redelivery, once
  EXPECT_EQ(Balance(std::string(second.key())), "10");
}

TEST_F(LocalTransactionTest, CallsThatWaitForTheWriterFailInsideTheCallback) {
  absl::Status s = broker_->RunInTransaction([&](LocalTransaction&) {
    EXPECT_EQ(producer_->Send({.topic = "orders"}).status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(broker_->CreateConsumer("g2", "orders").status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(broker_
                  ->RunInTransaction(
                      [](LocalTransaction&) { return absl::OkStatus(); })
                  .code(),
              absl::StatusCode::kFailedPrecondition);
    return absl::OkStatus();
  });
  TXMQ_EXPECT_OK(s);
}

TEST_F(LocalTransactionTest, TheTableBudgetIsEnforced) {
  options_.max_tables = 2;
  Reopen();
  TXMQ_EXPECT_OK(broker_->OpenTable("second"));
  EXPECT_EQ(broker_->OpenTable("third").status().code(),
            absl::StatusCode::kResourceExhausted);
  TXMQ_EXPECT_OK(broker_->OpenTable("balances"));  // open already
}

}  // namespace
}  // namespace txmq
