// Transactional messages: visibility (guarantee 2), resolution rules
// (guarantee 4), check-backs with an injected clock (guarantee 3), and the
// checker's thread rules.

#include <atomic>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::Eventually;
using ::txmq::testing::TempDir;

class FnChecker final : public TransactionChecker {
 public:
  explicit FnChecker(std::function<TransactionState(const HalfMessage&)> fn)
      : fn_(std::move(fn)) {}
  TransactionState Check(const HalfMessage& half) override {
    calls.fetch_add(1);
    return fn_(half);
  }
  std::atomic<int> calls{0};

 private:
  std::function<TransactionState(const HalfMessage&)> fn_;
};

class TransactionTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    producer_.reset();
    broker_.reset();
    Options options;
    options.clock = clock_;
    options.durability = durability_;
    auto broker = Broker::Open(tmp_.path(), options);
    TXMQ_ASSERT_OK(broker);
    broker_ = *std::move(broker);
    if (!broker_->DescribeTopic("orders").ok()) {
      TXMQ_ASSERT_OK(broker_->CreateTopic("orders", {.queues = 2}));
    }
    auto producer = broker_->CreateProducer({.group = "order-service"});
    TXMQ_ASSERT_OK(producer);
    producer_ = *std::move(producer);
  }

  // Everything a fresh group can receive now.
  std::vector<std::string> Visible() {
    auto consumer =
        broker_->CreateConsumer("probe-" + std::to_string(probes_++), "orders");
    EXPECT_TRUE(consumer.ok());
    std::vector<std::string> bodies;
    while (true) {
      auto batch = (*consumer)->Receive(100, absl::ZeroDuration());
      EXPECT_TRUE(batch.ok());
      if (!batch.ok() || batch->empty()) break;
      for (const MessageView& m : *batch) bodies.emplace_back(m.body());
    }
    return bodies;
  }

  std::shared_ptr<FnChecker> Register(
      std::function<TransactionState(const HalfMessage&)> fn,
      CheckPolicy policy = {}, const std::string& group = "order-service") {
    auto checker = std::make_shared<FnChecker>(std::move(fn));
    EXPECT_TRUE(broker_->RegisterChecker(group, checker, policy).ok());
    return checker;
  }

  uint32_t ChecksOf(const TransactionId& id) {
    auto list = broker_->ListTransactions();
    for (const HalfMessageInfo& info : *list) {
      if (info.id == id) return info.checks;
    }
    return UINT32_MAX;
  }

  TempDir tmp_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  Durability durability_ = Durability::kSync;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Producer> producer_;
  int probes_ = 0;
};

TEST_F(TransactionTest, HalfMessageIsInvisibleUntilCommit) {
  auto txn =
      producer_->Begin({.topic = "orders", .key = "o-1", .body = "paid"});
  TXMQ_ASSERT_OK(txn);
  EXPECT_TRUE(Visible().empty());
  EXPECT_EQ(broker_->DescribeTopic("orders")->message_count(), 0u);
  EXPECT_EQ(broker_->Stats().pending_transactions, 1u);
  auto sent = (*txn)->Commit();
  TXMQ_ASSERT_OK(sent);
  EXPECT_EQ(Visible(), std::vector<std::string>{"paid"});
  EXPECT_EQ(sent->id.offset(), sent->offset);
  EXPECT_EQ(broker_->Stats().pending_transactions, 0u);
}

TEST_F(TransactionTest, RolledBackMessageIsNeverVisible) {
  auto txn = producer_->Begin({.topic = "orders", .body = "cancelled"});
  TXMQ_ASSERT_OK(txn);
  TXMQ_ASSERT_OK((*txn)->Rollback());
  EXPECT_TRUE(Visible().empty());
  Open();  // and not after a restart either
  EXPECT_TRUE(Visible().empty());
  EXPECT_EQ(broker_->Stats().pending_transactions, 0u);
}

TEST_F(TransactionTest, ResolutionIsIdempotentAndConflictsAreRefused) {
  auto a = producer_->Begin({.topic = "orders", .body = "a"});
  auto b = producer_->Begin({.topic = "orders", .body = "b"});
  TXMQ_ASSERT_OK(a);
  TXMQ_ASSERT_OK(b);
  auto first = (*a)->Commit();
  TXMQ_ASSERT_OK(first);
  auto again = (*a)->Commit();
  TXMQ_ASSERT_OK(again);
  EXPECT_EQ(again->id, first->id);
  EXPECT_EQ(again->offset, first->offset);
  EXPECT_EQ((*a)->Rollback().code(), absl::StatusCode::kFailedPrecondition);

  TXMQ_ASSERT_OK((*b)->Rollback());
  TXMQ_ASSERT_OK((*b)->Rollback());
  absl::Status late = (*b)->Commit().status();
  EXPECT_EQ(late.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(late.message()).find("rolled back"), std::string::npos);

  EXPECT_EQ(Visible(), std::vector<std::string>{"a"});  // nothing changed
  auto unknown = TransactionId::Parse("0123456789abcdef0123456789abcdef");
  EXPECT_EQ(broker_->CommitTransaction(*unknown).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(broker_->RollbackTransaction(*unknown).code(),
            absl::StatusCode::kNotFound);
  // The same answers after a restart.
  const TransactionId a_id = (*a)->id(), b_id = (*b)->id();
  a->reset();
  b->reset();
  Open();
  EXPECT_EQ(broker_->CommitTransaction(a_id)->id, first->id);
  EXPECT_EQ(broker_->CommitTransaction(b_id).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(TransactionTest, BeginNeedsAProducerGroup) {
  auto plain = broker_->CreateProducer();
  EXPECT_EQ((*plain)->Begin({.topic = "orders"}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(producer_->Begin({.topic = "nope"}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(TransactionTest, PendingTransactionsSurviveRestartAndAreListed) {
  auto txn = producer_->Begin(
      {.topic = "orders", .key = "o-7", .body = std::string(100, 'x')});
  TXMQ_ASSERT_OK(txn);
  const TransactionId id = (*txn)->id();
  txn->reset();
  Open();
  auto list = broker_->ListTransactions();
  TXMQ_ASSERT_OK(list);
  ASSERT_EQ(list->size(), 1u);
  const HalfMessageInfo& info = (*list)[0];
  EXPECT_EQ(info.id, id);
  EXPECT_EQ(info.group, "order-service");
  EXPECT_EQ(info.topic, "orders");
  EXPECT_EQ(info.key, "o-7");
  EXPECT_EQ(info.body_bytes, 100u);
  EXPECT_EQ(info.checks, 0u);
  EXPECT_FALSE(info.exhausted);
  EXPECT_EQ(info.begin_time, clock_->Now());
  EXPECT_EQ(info.next_check, clock_->Now() + absl::Seconds(6));
  EXPECT_EQ(broker_->ListTransactions("other-group")->size(), 0u);
  EXPECT_EQ(broker_->ListTransactions("", 1000, true)->size(), 0u);
  TXMQ_ASSERT_OK(broker_->CommitTransaction(id));
  EXPECT_EQ(Visible().size(), 1u);
}

TEST_F(TransactionTest, CheckBackCommitsWhatTheLocalDatabaseCommitted) {
  std::set<std::string> local_db = {"o-1"};  // o-2 never committed locally
  auto checker = Register([&](const HalfMessage& half) {
    return local_db.count(std::string(half.message.key()))
               ? TransactionState::kCommit
               : TransactionState::kRollback;
  });
  TXMQ_ASSERT_OK(
      producer_->Begin({.topic = "orders", .key = "o-1", .body = "1"}));
  TXMQ_ASSERT_OK(
      producer_->Begin({.topic = "orders", .key = "o-2", .body = "2"}));
  clock_->Advance(absl::Seconds(5));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(checker->calls.load(), 0);  // not before the timeout
  clock_->Advance(absl::Seconds(1));
  ASSERT_TRUE(
      Eventually([&] { return broker_->Stats().pending_transactions == 0; }));
  EXPECT_EQ(Visible(), std::vector<std::string>{"1"});
  EXPECT_EQ(checker->calls.load(), 2);
}

TEST_F(TransactionTest, UnknownAnswersBackOffThenExhaustIntoTheHold) {
  CheckPolicy policy;
  policy.max_checks = 3;
  policy.first_interval = absl::Seconds(5);
  policy.max_interval = absl::Seconds(60);
  auto checker = Register(
      [](const HalfMessage&) { return TransactionState::kUnknown; }, policy);
  auto txn = producer_->Begin({.topic = "orders", .body = "maybe"});
  const TransactionId id = (*txn)->id();
  clock_->Advance(absl::Seconds(6));
  ASSERT_TRUE(Eventually([&] { return ChecksOf(id) == 1; }));
  auto info = (*broker_->ListTransactions())[0];
  EXPECT_EQ(info.next_check, clock_->Now() + absl::Seconds(5));
  clock_->Advance(absl::Seconds(5));
  ASSERT_TRUE(Eventually([&] { return ChecksOf(id) == 2; }));
  info = (*broker_->ListTransactions())[0];
  EXPECT_EQ(info.next_check, clock_->Now() + absl::Seconds(10));  // doubled
  clock_->Advance(absl::Seconds(10));
  ASSERT_TRUE(
      Eventually([&] { return broker_->Stats().exhausted_transactions == 1; }));
  auto hold = broker_->ListTransactions("", 1000, /*exhausted_only=*/true);
  ASSERT_EQ(hold->size(), 1u);
  EXPECT_EQ((*hold)[0].checks, 3u);
  EXPECT_EQ((*hold)[0].next_check, absl::InfiniteFuture());
  // Never checked again, never dropped, even across a restart.
  clock_->Advance(absl::Hours(24));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(checker->calls.load(), 3);
  Open();
  EXPECT_EQ(broker_->Stats().exhausted_transactions, 1u);
  TXMQ_ASSERT_OK(broker_->CommitTransaction(id));  // resolvable by hand
  EXPECT_EQ(Visible(), std::vector<std::string>{"maybe"});
  EXPECT_EQ(broker_->Stats().exhausted_transactions, 0u);
}

TEST_F(TransactionTest, AGroupWithoutACheckerBurnsNoChecks) {
  auto txn = producer_->Begin({.topic = "orders", .key = "k", .body = "v"});
  const TransactionId id = (*txn)->id();
  for (int i = 0; i < 10; ++i) clock_->Advance(absl::Minutes(10));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(ChecksOf(id), 0u);
  // A restart, then the host registers: the check happens now.
  txn->reset();
  Open();
  auto checker =
      Register([](const HalfMessage&) { return TransactionState::kCommit; });
  ASSERT_TRUE(Eventually([&] { return checker->calls.load() == 1; }));
  ASSERT_TRUE(
      Eventually([&] { return broker_->Stats().pending_transactions == 0; }));
  EXPECT_EQ(Visible(), std::vector<std::string>{"v"});
}

TEST_F(TransactionTest, AThrowingOrSlowCheckerDoesNotStallOtherGroups) {
  std::atomic<bool> release{false};
  auto slow = Register(
      [&](const HalfMessage&) -> TransactionState {
        while (!release.load()) absl::SleepFor(absl::Milliseconds(1));
        throw std::runtime_error("the local database is down");
      },
      CheckPolicy{}, "slow-group");
  auto fast =
      Register([](const HalfMessage&) { return TransactionState::kCommit; },
               CheckPolicy{}, "fast-group");
  auto slow_producer = broker_->CreateProducer({.group = "slow-group"});
  auto fast_producer = broker_->CreateProducer({.group = "fast-group"});
  auto stuck = (*slow_producer)->Begin({.topic = "orders", .body = "s"});
  for (int i = 0; i < 5; ++i) {
    TXMQ_ASSERT_OK((*fast_producer)->Begin({.topic = "orders", .body = "f"}));
  }
  clock_->Advance(absl::Seconds(6));
  ASSERT_TRUE(Eventually([&] { return fast->calls.load() == 5; }));
  ASSERT_TRUE(
      Eventually([&] { return broker_->Stats().pending_transactions == 1; }));
  EXPECT_EQ(Visible().size(), 5u);
  release.store(true);
  // The exception counted as unknown: one check, still pending.
  ASSERT_TRUE(Eventually([&] { return ChecksOf((*stuck)->id()) == 1; }));
  EXPECT_EQ(broker_->Stats().pending_transactions, 1u);
}

TEST_F(TransactionTest, CheckerMayCallTheBroker) {
  // A checker that resolves by itself instead of answering.
  Register([&](const HalfMessage& half) {
    EXPECT_TRUE(broker_->RollbackTransaction(half.id).ok());
    return TransactionState::kUnknown;
  });
  auto txn = producer_->Begin({.topic = "orders", .body = "x"});
  clock_->Advance(absl::Seconds(6));
  ASSERT_TRUE(
      Eventually([&] { return broker_->Stats().pending_transactions == 0; }));
  EXPECT_TRUE(Visible().empty());
}

TEST_F(TransactionTest, BeginCanOverrideTheFirstCheck) {
  auto checker =
      Register([](const HalfMessage&) { return TransactionState::kCommit; });
  TXMQ_ASSERT_OK(producer_->Begin({.topic = "orders", .body = "soon"},
                                  {.first_check = absl::Milliseconds(500)}));
  clock_->Advance(absl::Milliseconds(499));
  absl::SleepFor(absl::Milliseconds(30));
  EXPECT_EQ(checker->calls.load(), 0);
  clock_->Advance(absl::Milliseconds(1));
  ASSERT_TRUE(Eventually([&] { return checker->calls.load() == 1; }));
}

TEST_F(TransactionTest, SendInTransactionAppliesTheLocalAnswer) {
  auto committed = producer_->SendInTransaction(
      {.topic = "orders", .body = "c"},
      [](const TransactionId&) { return TransactionState::kCommit; });
  TXMQ_ASSERT_OK(committed);
  EXPECT_TRUE(committed->sent.has_value());
  auto rolled = producer_->SendInTransaction(
      {.topic = "orders", .body = "r"},
      [](const TransactionId&) { return TransactionState::kRollback; });
  TXMQ_ASSERT_OK(rolled);
  EXPECT_FALSE(rolled->sent.has_value());
  auto unknown = producer_->SendInTransaction(
      {.topic = "orders", .body = "u"},
      [](const TransactionId&) -> TransactionState {
        throw std::runtime_error("crashed mid-transaction");
      });
  TXMQ_ASSERT_OK(unknown);
  EXPECT_EQ(unknown->state, TransactionState::kUnknown);
  EXPECT_EQ(Visible(), std::vector<std::string>{"c"});
  EXPECT_EQ(broker_->Stats().pending_transactions, 1u);
  // The check-back settles the unknown one.
  Register([](const HalfMessage&) { return TransactionState::kCommit; });
  clock_->Advance(absl::Seconds(6));
  ASSERT_TRUE(
      Eventually([&] { return broker_->Stats().pending_transactions == 0; }));
  std::vector<std::string> visible = Visible();
  std::sort(visible.begin(), visible.end());
  EXPECT_EQ(visible, (std::vector<std::string>{"c", "u"}));
}

TEST_F(TransactionTest, CommittingIntoADeletedTopicIsRefused) {
  auto txn = producer_->Begin({.topic = "orders", .body = "x"});
  TXMQ_ASSERT_OK(broker_->DeleteTopic("orders"));
  EXPECT_EQ((*txn)->Commit().status().code(), absl::StatusCode::kNotFound);
  TXMQ_EXPECT_OK((*txn)->Rollback());
}

TEST_F(TransactionTest, OutcomesArePrunedAfterTheirRetention) {
  auto txn = producer_->Begin({.topic = "orders", .body = "x"});
  TXMQ_ASSERT_OK((*txn)->Commit());
  const TransactionId id = (*txn)->id();
  TXMQ_ASSERT_OK(broker_->CommitTransaction(id));  // still known
  clock_->Advance(absl::Hours(73));                // past the 72 h default
  ASSERT_TRUE(Eventually([&] {
    return broker_->CommitTransaction(id).status().code() ==
           absl::StatusCode::kNotFound;
  }));
}

TEST_F(TransactionTest, BeginIsDurableInAsyncModeToo) {
  durability_ = Durability::kAsync;
  Open();
  auto txn = producer_->Begin({.topic = "orders", .body = "x"});
  TXMQ_ASSERT_OK(txn);
  EXPECT_EQ(broker_->ListTransactions()->size(), 1u);
  // (The kill -9 tests in tests/crash prove the durability.)
}

TEST_F(TransactionTest, AnAnswerThatCannotApplyCountsAsUnknown) {
  // The checker says commit, but the topic is gone: the transaction must
  // not be left unchecked; it is counted, backs off and ends in the hold.
  CheckPolicy policy;
  policy.max_checks = 2;
  auto checker = Register(
      [](const HalfMessage&) { return TransactionState::kCommit; }, policy);
  auto txn = producer_->Begin({.topic = "orders", .body = "x"});
  TXMQ_ASSERT_OK(broker_->DeleteTopic("orders"));
  clock_->Advance(absl::Seconds(6));
  ASSERT_TRUE(Eventually([&] { return ChecksOf((*txn)->id()) == 1; }));
  clock_->Advance(absl::Seconds(5));
  ASSERT_TRUE(
      Eventually([&] { return broker_->Stats().exhausted_transactions == 1; }));
  EXPECT_EQ(checker->calls.load(), 2);
  TXMQ_EXPECT_OK(broker_->RollbackTransaction((*txn)->id()));
}

TEST_F(TransactionTest, AClockThatStepsBackLosesNoCheck) {
  auto checker =
      Register([](const HalfMessage&) { return TransactionState::kCommit; });
  clock_->Advance(-absl::Minutes(1));  // e.g. an NTP step
  TXMQ_ASSERT_OK(producer_->Begin({.topic = "orders", .body = "x"},
                                  {.first_check = absl::Seconds(1)}));
  clock_->Advance(absl::Minutes(30));
  ASSERT_TRUE(Eventually([&] { return checker->calls.load() == 1; }));
  ASSERT_TRUE(
      Eventually([&] { return broker_->Stats().pending_transactions == 0; }));
}

TEST_F(TransactionTest, OutcomesAreKeptForTheRetentionAfterResolution) {
  auto txn = producer_->Begin({.topic = "orders", .body = "x"});
  clock_->Advance(absl::Hours(73));  // resolved long after it began
  TXMQ_ASSERT_OK((*txn)->Rollback());
  clock_->Advance(absl::Seconds(30));
  absl::SleepFor(absl::Milliseconds(30));
  EXPECT_EQ((*txn)->Commit().status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Also across a restart; then forgotten once the retention runs out.
  const TransactionId id = (*txn)->id();
  txn->reset();
  Open();
  EXPECT_EQ(broker_->CommitTransaction(id).status().code(),
            absl::StatusCode::kFailedPrecondition);
  clock_->Advance(absl::Hours(72));
  ASSERT_TRUE(Eventually([&] {
    return broker_->CommitTransaction(id).status().code() ==
           absl::StatusCode::kNotFound;
  }));
}

TEST_F(TransactionTest, ConcurrentRegistrationsOfOneGroupAreSafe) {
  auto checker = std::make_shared<FnChecker>(
      [](const HalfMessage&) { return TransactionState::kCommit; });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        EXPECT_TRUE(broker_->RegisterChecker("order-service", checker).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  TXMQ_ASSERT_OK(producer_->Begin({.topic = "orders", .body = "x"}));
  clock_->Advance(absl::Seconds(6));
  ASSERT_TRUE(
      Eventually([&] { return broker_->Stats().pending_transactions == 0; }));
}

TEST_F(TransactionTest, ACheckerCannotUnregisterItsOwnGroup) {
  std::atomic<int> code{-1};
  Register([&](const HalfMessage&) {
    code.store(
        static_cast<int>(broker_->UnregisterChecker("order-service").code()));
    return TransactionState::kCommit;
  });
  TXMQ_ASSERT_OK(producer_->Begin({.topic = "orders", .body = "x"}));
  clock_->Advance(absl::Seconds(6));
  ASSERT_TRUE(Eventually([&] { return code.load() != -1; }));
  EXPECT_EQ(code.load(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  ASSERT_TRUE(
      Eventually([&] { return broker_->Stats().pending_transactions == 0; }));
}

TEST_F(TransactionTest, UnregisterStopsAfterTheCheckInProgress) {
  std::atomic<bool> release{false};
  auto slow = Register([&](const HalfMessage&) {
    while (!release.load()) absl::SleepFor(absl::Milliseconds(1));
    return TransactionState::kUnknown;
  });
  for (int i = 0; i < 20; ++i) {
    TXMQ_ASSERT_OK(producer_->Begin({.topic = "orders", .body = "x"}));
  }
  clock_->Advance(absl::Seconds(6));
  ASSERT_TRUE(Eventually([&] { return slow->calls.load() == 1; }));
  std::thread unregister(
      [&] { EXPECT_TRUE(broker_->UnregisterChecker("order-service").ok()); });
  absl::SleepFor(absl::Milliseconds(20));
  release.store(true);
  unregister.join();
  EXPECT_EQ(slow->calls.load(), 1);  // not the rest of its batch
  // The other 19 are still due; a new checker gets them at once (the one
  // answered unknown is due again in 5 s).
  auto fast =
      Register([](const HalfMessage&) { return TransactionState::kCommit; });
  ASSERT_TRUE(
      Eventually([&] { return broker_->Stats().pending_transactions <= 1; }));
  EXPECT_GE(fast->calls.load(), 19);
  clock_->Advance(absl::Seconds(5));
  ASSERT_TRUE(
      Eventually([&] { return broker_->Stats().pending_transactions == 0; }));
}

TEST_F(TransactionTest, PolicyAndIdErrors) {
  auto checker = std::make_shared<FnChecker>(
      [](const HalfMessage&) { return TransactionState::kCommit; });
  EXPECT_EQ(broker_->RegisterChecker("bad group", checker).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broker_->RegisterChecker("g", nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  CheckPolicy bad;
  bad.max_checks = 0;
  EXPECT_EQ(broker_->RegisterChecker("g", checker, bad).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broker_->UnregisterChecker("never").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(TransactionId::Parse("xyz").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(producer_
                ->Begin({.topic = "orders"},
                        {.first_check = absl::InfiniteDuration()})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  TXMQ_ASSERT_OK(broker_->RegisterChecker("g", checker));
  TXMQ_EXPECT_OK(broker_->UnregisterChecker("g"));
}

}  // namespace
}  // namespace txmq
