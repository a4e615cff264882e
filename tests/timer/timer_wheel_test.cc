#include "timer/timer_wheel.h"

#include <algorithm>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace txmq {
namespace {

TimerTarget Target(uint32_t n, uint8_t kind = 1) {
  TimerTarget t;
  t.kind = kind;
  for (int i = 0; i < 4; ++i) t.id[i] = static_cast<uint8_t>(n >> (8 * i));
  return t;
}

std::vector<int64_t> Dues(const std::vector<Timer>& fired) {
  std::vector<int64_t> out;
  for (const Timer& t : fired) out.push_back(t.due_ms);
  return out;
}

TEST(TimerWheelTest, FiresInDueOrderAtTheRightTime) {
  TimerWheel wheel(1000);
  for (int64_t due : {1005, 1001, 1003, 1002, 1004}) {
    wheel.Add({due, Target(static_cast<uint32_t>(due))});
  }
  std::vector<Timer> fired;
  wheel.Advance(1000, &fired);
  EXPECT_TRUE(fired.empty());
  wheel.Advance(1002, &fired);
  EXPECT_EQ(Dues(fired), (std::vector<int64_t>{1001, 1002}));
  fired.clear();
  wheel.Advance(1010, &fired);
  EXPECT_EQ(Dues(fired), (std::vector<int64_t>{1003, 1004, 1005}));
  EXPECT_EQ(wheel.size(), 0u);
}

TEST(TimerWheelTest, TiesFireInTheOrderTheyWereAdded) {
  TimerWheel wheel(0);
  for (uint32_t i = 0; i < 10; ++i) wheel.Add({500, Target(i)});
  std::vector<Timer> fired;
  wheel.Advance(500, &fired);
  ASSERT_EQ(fired.size(), 10u);
  for (uint32_t i = 0; i < 10; ++i) EXPECT_EQ(fired[i].target, Target(i));
}

TEST(TimerWheelTest, CascadesThroughEveryLevelWithoutFiringEarly) {
  // Dues spread over every level: 1 ms .. 20 days.
  TimerWheel wheel(0);
  std::vector<int64_t> dues = {1,          63,         64,        65,
                               4095,       4096,       262143,    262144,
                               3600000,    16777215,   16777216,  86400000,
                               1073741823, 1073741824, 1728000000};
  for (size_t i = 0; i < dues.size(); ++i) {
    wheel.Add({dues[i], Target(static_cast<uint32_t>(i))});
  }
  EXPECT_GE(wheel.levels(), 6u);
  std::vector<int64_t> seen;
  // Step through time with uneven steps; nothing may fire early or late.
  int64_t now = 0;
  std::mt19937 rng(1);
  while (wheel.size() > 0) {
    now += 1 + rng() % 3000000;
    std::vector<Timer> fired;
    wheel.Advance(now, &fired);
    for (const Timer& t : fired) {
      EXPECT_LE(t.due_ms, now);
      EXPECT_GT(t.due_ms, now - 3000001) << "fired late";
      seen.push_back(t.due_ms);
    }
  }
  EXPECT_EQ(seen, dues);
}

TEST(TimerWheelTest, EveryMillisecondStepMatchesASortedList) {
  TimerWheel wheel(7);
  std::mt19937 rng(2);
  std::vector<int64_t> expected;
  for (uint32_t i = 0; i < 5000; ++i) {
    const int64_t due = 8 + rng() % 300000;
    wheel.Add({due, Target(i)});
    expected.push_back(due);
  }
  std::sort(expected.begin(), expected.end());
  std::vector<int64_t> seen;
  for (int64_t now = 8; now <= 300010; ++now) {
    std::vector<Timer> fired;
    wheel.Advance(now, &fired);
    for (const Timer& t : fired) {
      ASSERT_EQ(t.due_ms, now) << "fired at the wrong millisecond";
      seen.push_back(t.due_ms);
    }
  }
  EXPECT_EQ(seen, expected);
}

TEST(TimerWheelTest, CancelAndReplace) {
  TimerWheel wheel(0);
  wheel.Add({100, Target(1)});
  wheel.Add({200, Target(2)});
  wheel.Add({300, Target(3)});
  EXPECT_TRUE(wheel.Cancel(Target(2)));
  EXPECT_FALSE(wheel.Cancel(Target(2)));
  EXPECT_FALSE(wheel.Cancel(Target(9)));
  wheel.Add({50000, Target(3)});  // replaces the timer at 300
  EXPECT_EQ(wheel.size(), 2u);
  std::vector<Timer> fired;
  wheel.Advance(1000, &fired);
  EXPECT_EQ(Dues(fired), std::vector<int64_t>{100});
  fired.clear();
  wheel.Advance(60000, &fired);
  EXPECT_EQ(Dues(fired), std::vector<int64_t>{50000});
  EXPECT_EQ(wheel.size(), 0u);
}

TEST(TimerWheelTest, PastDueTimersFireAtTheNextAdvance) {
  TimerWheel wheel(10000);
  wheel.Add({5, Target(1)});
  wheel.Add({10000, Target(2)});
  EXPECT_EQ(wheel.NextExpiration(), 10000);
  std::vector<Timer> fired;
  wheel.Advance(10000, &fired);
  EXPECT_EQ(Dues(fired), (std::vector<int64_t>{5, 10000}));
}

TEST(TimerWheelTest, AClockThatJumpsFiresEverythingDueOnce) {
  TimerWheel wheel(0);
  for (uint32_t i = 0; i < 1000; ++i) wheel.Add({1 + i * 997, Target(i)});
  std::vector<Timer> fired;
  wheel.Advance(int64_t{1} << 40, &fired);  // decades ahead, in one step
  EXPECT_EQ(fired.size(), 1000u);
  EXPECT_TRUE(std::is_sorted(
      fired.begin(), fired.end(),
      [](const Timer& a, const Timer& b) { return a.due_ms < b.due_ms; }));
  // Backwards: ignored; a new timer relative to the wheel's time still works.
  fired.clear();
  wheel.Advance(5, &fired);
  EXPECT_TRUE(fired.empty());
  EXPECT_EQ(wheel.now_ms(), int64_t{1} << 40);
  wheel.Add({(int64_t{1} << 40) + 10, Target(7)});
  wheel.Advance((int64_t{1} << 40) + 10, &fired);
  EXPECT_EQ(fired.size(), 1u);
}

TEST(TimerWheelTest, NextExpirationLetsTheOwnerSleep) {
  TimerWheel wheel(0);
  EXPECT_EQ(wheel.NextExpiration(), std::nullopt);
  wheel.Add({100000, Target(1)});
  const std::optional<int64_t> next = wheel.NextExpiration();
  ASSERT_TRUE(next.has_value());
  EXPECT_LE(*next, 100000);
  EXPECT_GT(*next, 0);
  // Sleeping to each expiration in turn reaches the timer in a few steps.
  int steps = 0;
  std::vector<Timer> fired;
  while (fired.empty() && steps < 20) {
    wheel.Advance(*wheel.NextExpiration(), &fired);
    ++steps;
  }
  EXPECT_EQ(Dues(fired), std::vector<int64_t>{100000});
  EXPECT_LE(steps, 5);
}

}  // namespace
}  // namespace txmq
