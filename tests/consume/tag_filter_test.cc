#include "consume/tag_filter.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "log/record_codec.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::TempDir;

// A decoded view of a message with `tags` (kept alive by `storage`).
MessageView ViewWithTags(const std::vector<std::string>& tags,
                         std::unique_ptr<uint64_t[]>& storage) {
  auto record = PendingRecord::Encode(
      Message{.topic = "t", .tags = tags, .body = "b"}, 0, 1 << 20);
  storage.reset(new uint64_t[record->size() / 8]);
  record->WriteTo(storage.get());
  return *MessageView::FromRecord(
      std::string_view(reinterpret_cast<char*>(storage.get()), record->size()));
}

TEST(TagFilterTest, ParsesStarAndAlternatives) {
  EXPECT_TRUE(TagFilter::Parse("*")->accepts_all());
  EXPECT_TRUE(TagFilter::Parse("")->accepts_all());
  EXPECT_TRUE(TagFilter::Parse("  *  ")->accepts_all());
  EXPECT_FALSE(TagFilter::Parse("a")->accepts_all());
  EXPECT_FALSE(TagFilter::Parse("a||b || c")->accepts_all());
  for (const char* bad : {"a||", "||a", "a|b", "a || * ", "a ||  || b"}) {
    EXPECT_EQ(TagFilter::Parse(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(TagFilterTest, AcceptsMessagesWithAnyListedTag) {
  std::unique_ptr<uint64_t[]> s1, s2, s3, s4;
  const TagFilter filter = *TagFilter::Parse("paid || shipped");
  EXPECT_TRUE(filter.Accepts(ViewWithTags({"paid"}, s1)));
  EXPECT_TRUE(filter.Accepts(ViewWithTags({"eu", "shipped"}, s2)));
  EXPECT_FALSE(filter.Accepts(ViewWithTags({"cancelled"}, s3)));
  EXPECT_FALSE(filter.Accepts(ViewWithTags({}, s4)));
  EXPECT_TRUE(TagFilter::Parse("*")->Accepts(ViewWithTags({}, s4)));
}

TEST(TagFilterTest, ConsumersGetOnlyTheirTagsAndTheRestCountsAsConsumed) {
  TempDir tmp;
  auto broker = *Broker::Open(tmp.path());
  TXMQ_ASSERT_OK(broker->CreateTopic("orders", {.queues = 2}));
  auto producer = *broker->CreateProducer();
  for (int i = 0; i < 300; ++i) {
    const std::string tag = i % 3 == 0   ? "paid"
                            : i % 3 == 1 ? "cancelled"
                                         : "new";
    TXMQ_ASSERT_OK(producer->Send(
        {.topic = "orders", .tags = {tag}, .body = std::to_string(i)}));
  }
  auto paid = *broker->CreateConsumer("billing", "orders",
                                      {.tag_filter = "paid || new"});
  int got = 0;
  while (true) {
    auto batch = paid->Receive(64, absl::Milliseconds(50));
    TXMQ_ASSERT_OK(batch);
    if (batch->empty()) break;
    for (const MessageView& m : *batch) {
      const int i = std::stoi(std::string(m.body()));
      EXPECT_NE(i % 3, 1) << "a cancelled order was delivered";
      ++got;
    }
    TXMQ_ASSERT_OK(paid->Ack(*batch));
  }
  EXPECT_EQ(got, 200);
  // The skipped ones count as consumed: the group has no lag left.
  EXPECT_EQ(broker->DescribeGroup("billing", "orders")->total(), 0u);
  // Another group without a filter still gets everything.
  auto all = *broker->CreateConsumer("audit", "orders");
  int everything = 0;
  while (true) {
    auto batch = all->Receive(1000, absl::Milliseconds(50));
    TXMQ_ASSERT_OK(batch);
    if (batch->empty()) break;
    everything += batch->size();
  }
  EXPECT_EQ(everything, 300);
  EXPECT_EQ(broker->CreateConsumer("x", "orders", {.tag_filter = "a|b"})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace txmq
