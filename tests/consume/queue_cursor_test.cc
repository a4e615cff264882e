#include "consume/queue_cursor.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace txmq {
namespace {

TEST(QueueCursorTest, ClaimsAreBoundedByLimitAndMax) {
  QueueCursor cursor(5);
  EXPECT_EQ(cursor.Claim(10, 5), std::make_pair(uint64_t{5}, uint64_t{5}));
  EXPECT_EQ(cursor.Claim(3, 100), std::make_pair(uint64_t{5}, uint64_t{8}));
  EXPECT_EQ(cursor.Claim(100, 10), std::make_pair(uint64_t{8}, uint64_t{10}));
  EXPECT_EQ(cursor.claimed(), 10u);
}

TEST(QueueCursorTest, ConcurrentClaimsTileTheOffsetsExactlyOnce) {
  constexpr uint64_t kEnd = 200000;
  QueueCursor cursor(0);
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> got(8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      uint64_t limit = 0;
      while (limit < kEnd) {
        limit = std::min(kEnd, limit + 1000);  // the end grows over time
        while (true) {
          auto [b, e] = cursor.Claim(1 + t * 7, limit);
          if (b == e) break;
          got[t].push_back({b, e});
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<std::pair<uint64_t, uint64_t>> all;
  for (auto& v : got) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  uint64_t next = 0;
  for (auto [b, e] : all) {
    ASSERT_EQ(b, next) << "gap or overlap";
    ASSERT_LT(b, e);
    next = e;
  }
  EXPECT_EQ(next, kEnd);
}

TEST(QueueCursorTest, CommittedAdvancesOverTheAcknowledgedPrefix) {
  QueueCursor cursor(0);
  cursor.Claim(10, 10);
  EXPECT_FALSE(*cursor.Ack(5, 7));
  EXPECT_FALSE(*cursor.Ack(2, 3));
  EXPECT_EQ(cursor.committed(), 0u);
  EXPECT_TRUE(*cursor.Ack(0, 2));  // 0..2 + 2..3 merge
  EXPECT_EQ(cursor.committed(), 3u);
  EXPECT_TRUE(*cursor.Ack(3, 5));  // reaches the 5..7 range
  EXPECT_EQ(cursor.committed(), 7u);
  EXPECT_FALSE(*cursor.Ack(0, 7));  // again: harmless
  EXPECT_EQ(cursor.committed(), 7u);
  EXPECT_FALSE(*cursor.Ack(9, 10));
  EXPECT_FALSE(*cursor.Ack(8, 9));
  EXPECT_TRUE(*cursor.Ack(7, 8));
  EXPECT_EQ(cursor.committed(), 10u);
}

TEST(QueueCursorTest, UnclaimedRangesAreClaimedAgainFirst) {
  QueueCursor cursor(0);
  EXPECT_EQ(cursor.Claim(10, 100), std::make_pair(uint64_t{0}, uint64_t{10}));
  cursor.Unclaim(0, 10);
  EXPECT_EQ(cursor.Claim(4, 100), std::make_pair(uint64_t{0}, uint64_t{4}));
  EXPECT_EQ(cursor.Claim(100, 100), std::make_pair(uint64_t{4}, uint64_t{10}));
  EXPECT_EQ(cursor.Claim(5, 100), std::make_pair(uint64_t{10}, uint64_t{15}));
  EXPECT_TRUE(*cursor.Ack(0, 15));
  EXPECT_EQ(cursor.committed(), 15u);
}

TEST(QueueCursorTest, AckingAnUnclaimedOffsetIsAnError) {
  QueueCursor cursor(3);
  cursor.Claim(2, 100);  // 3, 4
  EXPECT_TRUE(*cursor.Ack(3, 5));
  absl::StatusOr<bool> bad = cursor.Ack(5, 6);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cursor.committed(), 5u);
}

TEST(QueueCursorTest, RandomOrderAcksEndFullyCommitted) {
  QueueCursor cursor(100);
  cursor.Claim(1000, 1100);
  std::vector<uint64_t> offsets;
  for (uint64_t o = 100; o < 1100; ++o) offsets.push_back(o);
  std::srand(7);
  for (size_t i = offsets.size() - 1; i > 0; --i) {
    std::swap(offsets[i], offsets[std::rand() % (i + 1)]);
  }
  for (uint64_t o : offsets) ASSERT_TRUE(cursor.Ack(o, o + 1).ok());
  EXPECT_EQ(cursor.committed(), 1100u);
}

TEST(QueueCursorTest, SkipToAcknowledgesAndNeverHandsOutWhatIsBelow) {
  QueueCursor cursor(0);
  EXPECT_EQ(cursor.Claim(4, 100), std::make_pair(uint64_t{0}, uint64_t{4}));
  EXPECT_EQ(cursor.Claim(4, 100), std::make_pair(uint64_t{4}, uint64_t{8}));
  cursor.Unclaim(4, 8);  // handed back, half of it to be skipped
  EXPECT_FALSE(cursor.Ack(12, 13).ok());  // never claimed
  EXPECT_TRUE(cursor.SkipTo(6));          // 0..6 deleted
  EXPECT_EQ(cursor.committed(), 6u);
  // The handed-back tail first, then new offsets.
  EXPECT_EQ(cursor.Claim(10, 100), std::make_pair(uint64_t{6}, uint64_t{8}));
  EXPECT_EQ(cursor.Claim(2, 100), std::make_pair(uint64_t{8}, uint64_t{10}));
  // A late acknowledgement of a skipped offset is harmless.
  EXPECT_FALSE(*cursor.Ack(0, 4));
  EXPECT_EQ(cursor.committed(), 6u);
  EXPECT_TRUE(*cursor.Ack(6, 8));
  EXPECT_EQ(cursor.committed(), 8u);
  // Behind nothing: no change.
  EXPECT_FALSE(cursor.SkipTo(8));
  EXPECT_FALSE(cursor.SkipTo(3));
  EXPECT_EQ(cursor.committed(), 8u);
}

TEST(QueueCursorTest, SkipToPastTheClaimsMovesTheNextClaim) {
  QueueCursor cursor(0);
  cursor.Claim(3, 100);  // 0..3 in flight
  EXPECT_FALSE(*cursor.Ack(1, 2));
  EXPECT_TRUE(cursor.SkipTo(20));
  EXPECT_EQ(cursor.committed(), 20u);
  EXPECT_EQ(cursor.claimed(), 20u);
  EXPECT_EQ(cursor.Claim(5, 100), std::make_pair(uint64_t{20}, uint64_t{25}));
  // Acknowledged ranges above the skip point are kept.
  EXPECT_FALSE(*cursor.Ack(22, 25));
  EXPECT_TRUE(cursor.SkipTo(21));
  EXPECT_EQ(cursor.committed(), 21u);
  EXPECT_TRUE(*cursor.Ack(21, 22));
  EXPECT_EQ(cursor.committed(), 25u);
}

TEST(QueueCursorTest, DirtyHandshakeNeverLosesTheLatestOffset) {
  // Many threads ack and mark dirty while a "writer" persists; after all,
  // the last persisted value must equal committed().
  QueueCursor cursor(0);
  constexpr uint64_t kEnd = 100000;
  cursor.Claim(kEnd, kEnd);
  std::atomic<int> scheduled{0};
  std::atomic<bool> done{false};
  std::atomic<uint64_t> persisted{0};
  std::thread writer([&] {
    while (!done.load() || scheduled.load() > 0) {
      if (scheduled.load() > 0) {
        scheduled.fetch_sub(1);
        persisted.store(cursor.TakeForPersist());
      }
    }
  });
  std::vector<std::thread> ackers;
  for (int t = 0; t < 4; ++t) {
    ackers.emplace_back([&, t] {
      for (uint64_t o = t; o < kEnd; o += 4) {
        if (*cursor.Ack(o, o + 1) && cursor.MarkDirty()) scheduled.fetch_add(1);
      }
    });
  }
  for (auto& t : ackers) t.join();
  done.store(true);
  writer.join();
  EXPECT_EQ(cursor.committed(), kEnd);
  EXPECT_EQ(persisted.load(), kEnd);
}

}  // namespace
}  // namespace txmq
