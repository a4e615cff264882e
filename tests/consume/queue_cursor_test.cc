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
  // A huge max does not overflow.
  EXPECT_EQ(cursor.Claim(UINT64_MAX, 12),
            std::make_pair(uint64_t{10}, uint64_t{12}));
  cursor.Unclaim(10, 12);
  EXPECT_EQ(cursor.Claim(UINT64_MAX, 20),
            std::make_pair(uint64_t{10}, uint64_t{12}));
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

namespace txmq {
namespace {

std::vector<OffsetRange> Expired(QueueCursor& cursor, int64_t now,
                                 int64_t* next = nullptr) {
  std::vector<OffsetRange> out;
  const int64_t n = cursor.TakeExpired(now, &out);
  if (next != nullptr) *next = n;
  return out;
}

TEST(QueueCursorLeaseTest, ExpiryReturnsOnlyUnacknowledgedOffsets) {
  QueueCursor cursor(0);
  cursor.Claim(10, 10);
  EXPECT_TRUE(cursor.Lease(0, 10, 1000, /*owner=*/1));
  EXPECT_FALSE(cursor.Lease(10, 10, 500, 1));  // empty: nothing to arm
  ASSERT_TRUE(cursor.Ack(2, 4).ok());
  ASSERT_TRUE(cursor.Ack(7, 8).ok());
  EXPECT_TRUE(Expired(cursor, 999).empty());
  int64_t next = 0;
  EXPECT_EQ(Expired(cursor, 1000, &next),
            (std::vector<OffsetRange>{{0, 2}, {4, 7}, {8, 10}}));
  EXPECT_EQ(next, INT64_MAX);
  EXPECT_EQ(cursor.leases(), 0u);
  EXPECT_TRUE(Expired(cursor, 5000).empty());  // taken once
}

TEST(QueueCursorLeaseTest, AcksEndLeasesInOrderAndOutOfOrder) {
  QueueCursor cursor(0);
  cursor.Claim(30, 30);
  cursor.Lease(0, 10, 1000, 1);
  cursor.Lease(10, 20, 1000, 2);
  cursor.Lease(20, 30, 1000, 3);
  ASSERT_TRUE(cursor.Ack(10, 20).ok());  // out of order: its lease ends
  EXPECT_EQ(cursor.leases(), 2u);
  ASSERT_TRUE(cursor.Ack(0, 5).ok());  // in order: the lease is trimmed
  EXPECT_EQ(cursor.leases(), 2u);
  EXPECT_EQ(Expired(cursor, 1000),
            (std::vector<OffsetRange>{{5, 10}, {20, 30}}));
}

TEST(QueueCursorLeaseTest, ArmsOnlyForAnEarlierDeadline) {
  QueueCursor cursor(0);
  cursor.Claim(30, 30);
  EXPECT_TRUE(cursor.Lease(0, 10, 1000, 1));
  EXPECT_FALSE(cursor.Lease(10, 20, 2000, 1));
  EXPECT_TRUE(cursor.Lease(20, 30, 500, 1));
  int64_t next = 0;
  EXPECT_EQ(Expired(cursor, 500, &next), (std::vector<OffsetRange>{{20, 30}}));
  EXPECT_EQ(next, 1000);
  EXPECT_FALSE(cursor.Lease(30, 30, 1500, 1));
}

TEST(QueueCursorLeaseTest, ExtendMovesOneOffsetAndFailsOnceGone) {
  QueueCursor cursor(0);
  cursor.Claim(5, 5);
  cursor.Lease(0, 5, 1000, 1);
  bool arm = true;
  ASSERT_TRUE(cursor.Extend(2, 9000, &arm).ok());
  EXPECT_FALSE(arm);
  EXPECT_EQ(Expired(cursor, 1000), (std::vector<OffsetRange>{{0, 2}, {3, 5}}));
  EXPECT_EQ(Expired(cursor, 9000), (std::vector<OffsetRange>{{2, 3}}));
  EXPECT_EQ(cursor.Extend(2, 10000, &arm).code(),
            absl::StatusCode::kFailedPrecondition);
  cursor.Claim(1, 6);
  cursor.Lease(5, 6, 20000, 1);
  ASSERT_TRUE(cursor.Ack(5, 6).ok());
  EXPECT_EQ(cursor.Extend(5, 30000, &arm).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(QueueCursorLeaseTest, ReturnedLeasesAreClaimedAgainFirst) {
  QueueCursor cursor(0);
  cursor.Claim(10, 10);
  cursor.Lease(0, 4, 1000, /*owner=*/1);
  cursor.Lease(4, 8, 1000, /*owner=*/2);
  cursor.Lease(8, 10, 1000, /*owner=*/1);
  ASSERT_TRUE(cursor.Ack(1, 2).ok());
  cursor.ReturnOwned(1);
  EXPECT_EQ(cursor.leases(), 1u);
  std::vector<std::pair<uint64_t, uint64_t>> again;
  for (auto c = cursor.Claim(100, 20); c.first < c.second;
       c = cursor.Claim(100, 20)) {
    again.push_back(c);
    if (c.second == 20) break;
  }
  EXPECT_EQ(again, (std::vector<std::pair<uint64_t, uint64_t>>{
                       {0, 1}, {2, 4}, {8, 10}, {10, 20}}));
}

TEST(QueueCursorLeaseTest, ReleaseAndIsAcked) {
  QueueCursor cursor(0);
  cursor.Claim(5, 5);
  cursor.Lease(0, 5, 1000, 1);
  ASSERT_TRUE(cursor.Ack(3, 4).ok());
  EXPECT_TRUE(cursor.IsAcked(3));
  EXPECT_FALSE(cursor.IsAcked(2));
  EXPECT_TRUE(cursor.Release(2));
  EXPECT_FALSE(cursor.Release(2));
  EXPECT_EQ(Expired(cursor, 1000), (std::vector<OffsetRange>{{0, 2}, {4, 5}}));
  ASSERT_TRUE(cursor.Ack(0, 3).ok());
  EXPECT_TRUE(cursor.IsAcked(0));
  EXPECT_TRUE(cursor.IsAcked(3));
  EXPECT_FALSE(cursor.IsAcked(4));
}

}  // namespace
}  // namespace txmq
