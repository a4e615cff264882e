#include "storage/map_gate.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace txmq {
namespace {

TEST(MapGateTest, ClosedGateRefusesNewReadersAndWaitsForOldOnes) {
  MapGate gate;
  ASSERT_TRUE(gate.TryEnter());
  gate.Close();
  EXPECT_FALSE(gate.TryEnter());
  EXPECT_FALSE(gate.Empty());
  gate.Exit();
  EXPECT_TRUE(gate.Empty());
  gate.Open();
  EXPECT_TRUE(gate.TryEnter());
  gate.Exit();
}

TEST(MapGateTest, WaitEmptyGivesUpAtItsDeadline) {
  MapGate gate;
  ASSERT_TRUE(gate.TryEnter());
  gate.Close();
  EXPECT_FALSE(gate.WaitEmpty(absl::Now() + absl::Milliseconds(20)));
  std::thread reader([&] {
    absl::SleepFor(absl::Milliseconds(10));
    gate.Exit();
  });
  EXPECT_TRUE(gate.WaitEmpty(absl::InfiniteFuture()));
  reader.join();
}

TEST(MapGateTest, WaitOpenTimesOutWhileClosed) {
  MapGate gate;
  gate.Close();
  EXPECT_FALSE(gate.WaitOpen(absl::Now() + absl::Milliseconds(20)));
  std::thread opener([&] {
    absl::SleepFor(absl::Milliseconds(10));
    gate.Open();
  });
  EXPECT_TRUE(gate.WaitOpen(absl::InfiniteFuture()));
  opener.join();
}

TEST(MapGateTest, NoReaderIsInsideWhileTheWriterHoldsTheGate) {
  MapGate gate;
  std::atomic<bool> writer_inside{false};
  std::atomic<bool> stop{false};
  std::atomic<int> violations{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        if (!gate.TryEnter()) continue;
        if (writer_inside.load()) violations.fetch_add(1);
        gate.Exit();
      }
    });
  }
  for (int round = 0; round < 2000; ++round) {
    gate.Close();
    ASSERT_TRUE(gate.WaitEmpty(absl::InfiniteFuture()));
    writer_inside.store(true);
    writer_inside.store(false);
    gate.Open();
  }
  stop.store(true);
  for (auto& t : readers) t.join();
  EXPECT_EQ(violations.load(), 0);
}

}  // namespace
}  // namespace txmq
