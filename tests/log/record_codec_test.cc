#include "log/record_codec.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "txmq/message.h"

namespace txmq {
namespace {

// Serializes `record` into 8-byte aligned storage.
std::string_view Serialize(const PendingRecord& record,
                           std::unique_ptr<uint64_t[]>& storage) {
  storage.reset(new uint64_t[record.size() / 8]);
  record.WriteTo(storage.get());
  return std::string_view(reinterpret_cast<char*>(storage.get()),
                          record.size());
}

TEST(RecordCodecTest, RoundTripsEveryField) {
  Message m{.topic = "orders",
            .key = "order-7",
            .tags = {"paid", "eu"},
            .properties = {{"trace", "abc"}, {"empty", ""}},
            .body = std::string("\0binary\xff", 8)};
  absl::StatusOr<PendingRecord> record =
      PendingRecord::Encode(m, 1234, 1 << 20);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->size() % 8, 0u);
  const MessageId id = MessageId::Make(5678, 42, 9);
  record->Stamp(id, 3, 9, 5678);
  std::unique_ptr<uint64_t[]> storage;
  absl::StatusOr<MessageView> view =
      MessageView::FromRecord(Serialize(*record, storage));
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->topic(), "orders");
  EXPECT_EQ(view->key(), "order-7");
  EXPECT_EQ(view->body(), m.body);
  EXPECT_EQ(view->queue(), 3u);
  EXPECT_EQ(view->offset(), 9u);
  EXPECT_EQ(view->id(), id);
  EXPECT_EQ(view->born_time(), absl::FromUnixMillis(1234));
  EXPECT_EQ(view->store_time(), absl::FromUnixMillis(5678));
  EXPECT_EQ(view->tags(), (std::vector<std::string_view>{"paid", "eu"}));
  ASSERT_EQ(view->properties().size(), 2u);
  EXPECT_EQ(view->property("trace"), "abc");
  EXPECT_EQ(view->property("empty"), "");
  EXPECT_EQ(view->property("missing"), std::nullopt);
}

TEST(RecordCodecTest, LargeBodiesStayOneRecord) {
  Message m{.topic = "t", .body = std::string(3 << 20, 'x')};
  absl::StatusOr<PendingRecord> record = PendingRecord::Encode(m, 0, 4 << 20);
  ASSERT_TRUE(record.ok());
  std::unique_ptr<uint64_t[]> storage;
  absl::StatusOr<MessageView> view =
      MessageView::FromRecord(Serialize(*record, storage));
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->body().size(), m.body.size());
}

TEST(RecordCodecTest, RefusesWhatBreaksALimit) {
  struct Case {
    Message message;
    std::string says;
  };
  std::vector<Case> cases;
  cases.push_back({Message{.topic = "t", .body = std::string(2000, 'x')},
                   "body is 2000 bytes; the limit is 1024"});
  cases.push_back({Message{.topic = "t", .key = std::string(1025, 'k')},
                   "key is 1025 bytes"});
  cases.push_back({Message{.topic = "t", .tags = {""}}, "tag '' must be"});
  cases.push_back({Message{.topic = "t", .tags = {"a|b"}}, "contains '|'"});
  cases.push_back(
      {Message{.topic = "t", .tags = std::vector<std::string>(33, "t")},
       "33 tags"});
  cases.push_back(
      {Message{.topic = "t", .properties = {{"a", "1"}, {"a", "2"}}},
       "appears twice"});
  cases.push_back({Message{.topic = "t", .properties = {{"", "1"}}},
                   "property name '' must be"});
  cases.push_back({Message{.topic = "t",
                           .key = std::string(100, 'k'),
                           .body = std::string(1000, 'x')},
                   "record (body, key, tags and properties)"});
  for (const Case& c : cases) {
    absl::StatusOr<PendingRecord> r = PendingRecord::Encode(c.message, 0, 1024);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.says;
    EXPECT_NE(std::string(r.status().message()).find(c.says), std::string::npos)
        << r.status();
  }
}

TEST(RecordCodecTest, DeliveryTimeIsKeptOnlyWhenAhead) {
  const int64_t born = 1'700'000'000'000;
  auto deliver_at_ms = [&](absl::Time at) -> absl::StatusOr<int64_t> {
    absl::StatusOr<PendingRecord> r = PendingRecord::Encode(
        Message{.topic = "t", .deliver_at = at}, born, 1024);
    if (!r.ok()) return r.status();
    return r->deliver_at_ms();
  };
  const absl::Time now = absl::FromUnixMillis(born);
  EXPECT_EQ(*deliver_at_ms(absl::InfinitePast()), 0);
  EXPECT_EQ(*deliver_at_ms(now), 0);
  EXPECT_EQ(*deliver_at_ms(now - absl::Hours(1)), 0);
  EXPECT_EQ(*deliver_at_ms(now + absl::Milliseconds(1)), born + 1);
  EXPECT_EQ(*deliver_at_ms(now + kMaxDelay),
            born + kMaxDelay / absl::Milliseconds(1));
  absl::StatusOr<int64_t> too_far =
      deliver_at_ms(now + kMaxDelay + absl::Milliseconds(1));
  EXPECT_EQ(too_far.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(too_far.status().message()).find("366 days"),
            std::string::npos)
      << too_far.status();
  EXPECT_EQ(deliver_at_ms(absl::InfiniteFuture()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RecordCodecTest, GarbageIsDataLossNotACrash) {
  std::unique_ptr<uint64_t[]> words(new uint64_t[4]);
  for (int i = 0; i < 4; ++i) words[i] = 0xdeadbeefcafebabeull * (i + 1);
  absl::StatusOr<MessageView> view = MessageView::FromRecord(
      std::string_view(reinterpret_cast<char*>(words.get()), 32));
  EXPECT_EQ(view.status().code(), absl::StatusCode::kDataLoss);
  // Not whole words.
  view = MessageView::FromRecord(
      std::string_view(reinterpret_cast<char*>(words.get()), 12));
  EXPECT_EQ(view.status().code(), absl::StatusCode::kDataLoss);
}

TEST(MessageIdTest, EncodesTimeQueueAndOffsetAndSortsByTime) {
  const MessageId a = MessageId::Make(1700000000000, 7, 123456789);
  EXPECT_EQ(a.store_time_ms(), 1700000000000);
  EXPECT_EQ(a.queue_number(), 7u);
  EXPECT_EQ(a.offset(), 123456789u);
  const MessageId later = MessageId::Make(1700000000001, 0, 0);
  EXPECT_LT(a, later);
  EXPECT_LT(MessageId::Make(5, 1, 9), MessageId::Make(5, 2, 0));
}

TEST(MessageIdTest, ParsesWhatItPrints) {
  const MessageId id = MessageId::Make(1700000000000, 70000, 99);
  const std::string text = id.ToString();
  EXPECT_EQ(text.size(), 32u);
  absl::StatusOr<MessageId> back = MessageId::Parse(text);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, id);
  for (const char* bad : {"", "123", "zz0000000000000000000000000000zz",
                          "0000000000000000000000000000000000"}) {
    EXPECT_EQ(MessageId::Parse(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_TRUE(MessageId().IsZero());
}

}  // namespace
}  // namespace txmq
