// TimerService: volatile timers (no disk row) beyond the in-memory window
// wait in memory and fire when the clock reaches them; cancel and replace
// work wherever the timer is. Time is a ManualClock.

#include "timer/timer_service.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace txmq {
namespace {

using ::txmq::testing::Eventually;
using ::txmq::testing::TempDir;

constexpr uint8_t kKind = kVolatileKind | 1;

std::array<uint8_t, 16> Id(uint8_t n) {
  std::array<uint8_t, 16> id{};
  id[15] = n;
  return id;
}

class TimerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto env = Env::Open(tmp_.path(), Env::Config{});
    TXMQ_ASSERT_OK(env);
    env_ = *std::move(env);
    service_ = std::make_unique<TimerService>(
        env_.get(), env_->timer_table(), clock_,
        [this](std::vector<Timer> due) {
          absl::MutexLock lock(&mu_);
          for (const Timer& t : due) fired_.push_back(t.target.id[15]);
          return std::vector<Timer>();
        },
        absl::Minutes(10));
    service_->Start();
  }
  void TearDown() override { service_->Stop(); }

  std::vector<uint8_t> Fired() {
    absl::MutexLock lock(&mu_);
    return fired_;
  }
  int64_t In(absl::Duration d) { return absl::ToUnixMillis(clock_->Now() + d); }

  TempDir tmp_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::unique_ptr<Env> env_;
  std::unique_ptr<TimerService> service_;
  absl::Mutex mu_;
  std::vector<uint8_t> fired_ ABSL_GUARDED_BY(mu_);
};

TEST_F(TimerServiceTest, FarVolatileTimersWaitInMemoryAndFireInOrder) {
  service_->Schedule(kKind, Id(3), In(absl::Hours(30)));
  service_->Schedule(kKind, Id(2), In(absl::Hours(2)));
  service_->Schedule(kKind, Id(1), In(absl::Seconds(1)));
  ASSERT_TRUE(Eventually([&] { return service_->armed() == 3; }));
  clock_->Advance(absl::Seconds(1));
  ASSERT_TRUE(Eventually([&] { return Fired().size() == 1; }));
  clock_->Advance(absl::Hours(2));
  ASSERT_TRUE(Eventually([&] { return Fired().size() == 2; }));
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(Fired().size(), 2u);  // not early
  clock_->Advance(absl::Hours(28));
  ASSERT_TRUE(Eventually([&] { return Fired().size() == 3; }));
  EXPECT_EQ(Fired(), (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_EQ(service_->armed(), 0u);
}

TEST_F(TimerServiceTest, CancelAndReplaceReachFarTimers) {
  service_->Schedule(kKind, Id(1), In(absl::Hours(1)));
  service_->Schedule(kKind, Id(2), In(absl::Hours(1)));
  service_->Cancel(kKind, Id(1));
  // Replaced: far -> near, and near -> far.
  service_->Schedule(kKind, Id(2), In(absl::Seconds(5)));
  service_->Schedule(kKind, Id(3), In(absl::Seconds(5)));
  service_->Schedule(kKind, Id(3), In(absl::Hours(3)));
  clock_->Advance(absl::Seconds(5));
  ASSERT_TRUE(Eventually([&] { return Fired().size() == 1; }));
  EXPECT_EQ(Fired(), std::vector<uint8_t>{2});
  clock_->Advance(absl::Hours(2));
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(Fired(), std::vector<uint8_t>{2});
  clock_->Advance(absl::Hours(1));
  ASSERT_TRUE(Eventually([&] { return Fired().size() == 2; }));
  EXPECT_EQ(Fired(), (std::vector<uint8_t>{2, 3}));
  EXPECT_TRUE(Eventually([&] { return service_->armed() == 0; }));
}

TEST_F(TimerServiceTest, RescanKeepsVolatileTimers) {
  service_->Schedule(kKind, Id(1), In(absl::Seconds(5)));
  service_->Schedule(kKind, Id(2), In(absl::Hours(5)));
  ASSERT_TRUE(Eventually([&] { return service_->armed() == 2; }));
  service_->Rescan();
  service_->Wake();
  clock_->Advance(absl::Hours(5));
  ASSERT_TRUE(Eventually([&] { return Fired().size() == 2; }));
  EXPECT_EQ(Fired(), (std::vector<uint8_t>{1, 2}));
}

}  // namespace
}  // namespace txmq
