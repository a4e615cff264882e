// The consumer's direct record reader (lib/log/record_layout.h) against Cap'n
// Proto's own decoder.

#include "log/record_layout.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <memory>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "log/message_view_decoder.h"
#include "log/record_codec.h"
#include "record.capnp.h"

namespace txmq {
namespace {

using internal::MessageViewDecoder;

struct Stored {
  std::unique_ptr<uint64_t[]> words;
  std::string_view view;
};

Stored Store(const PendingRecord& record) {
  Stored s{std::unique_ptr<uint64_t[]>(new uint64_t[record.size() / 8]), {}};
  record.WriteTo(s.words.get());
  s.view =
      std::string_view(reinterpret_cast<char*>(s.words.get()), record.size());
  return s;
}

bool Inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() &&
          part.data() + part.size() <= whole.data() + whole.size());
}

void ExpectSameView(const MessageView& a, const MessageView& b) {
  EXPECT_EQ(a.key(), b.key());
  EXPECT_EQ(a.body(), b.body());
  EXPECT_EQ(a.id(), b.id());
  EXPECT_EQ(a.queue(), b.queue());
  EXPECT_EQ(a.offset(), b.offset());
  EXPECT_EQ(a.born_time(), b.born_time());
  EXPECT_EQ(a.store_time(), b.store_time());
}

TEST(RecordLayoutTest, AgreesWithCapnpOnRandomRecords) {
  std::mt19937 rng(42);
  for (int i = 0; i < 500; ++i) {
    Message m{.topic = "topic-" + std::to_string(i % 7),
              .key = std::string(rng() % 40, 'k'),
              .body = std::string(rng() % 3000, static_cast<char>(rng()))};
    for (uint32_t t = rng() % 4; t > 0; --t)
      m.tags.push_back("t" + std::to_string(t));
    for (uint32_t p = rng() % 3; p > 0; --p) {
      m.properties.push_back(
          {"p" + std::to_string(p), std::string(p * 5, 'v')});
    }
    auto record = PendingRecord::Encode(m, rng(), 1 << 20);
    ASSERT_TRUE(record.ok());
    record->Stamp(MessageId::Make(rng() % 100000, rng() % 50, i), rng() % 8, i,
                  rng());
    Stored s = Store(*record);
    HotFields hot;
    ASSERT_EQ(ReadHotFields(s.view, &hot), LayoutResult::kOk);
    absl::StatusOr<MessageView> slow = MessageView::FromRecord(s.view);
    ASSERT_TRUE(slow.ok());
    MessageView fast;
    ASSERT_TRUE(MessageViewDecoder::Decode(s.view, slow->topic(), &fast).ok());
    ExpectSameView(fast, *slow);
    EXPECT_EQ(fast.body(), m.body);
    EXPECT_EQ(fast.key(), m.key);
    std::vector<std::string_view> tags;
    ASSERT_EQ(ForEachTag(s.view,
                         [&](std::string_view tag) {
                           tags.push_back(tag);
                           return false;
                         }),
              LayoutResult::kOk);
    EXPECT_EQ(tags, slow->tags());
  }
}

TEST(RecordLayoutTest, LeavesMultiSegmentRecordsToCapnp) {
  // A builder with a tiny first segment spreads the record over segments.
  capnp::MallocMessageBuilder builder(4, capnp::AllocationStrategy::FIXED_SIZE);
  auto root = builder.initRoot<schema::MessageRecord>();
  root.setKey("a-key");
  root.setBody(capnp::Data::Reader(
      reinterpret_cast<const kj::byte*>("0123456789abcdef0123456789"), 26));
  root.setOffset(77);
  ASSERT_GT(builder.getSegmentsForOutput().size(), 1u);
  kj::Array<capnp::word> flat = capnp::messageToFlatArray(builder);
  std::string_view view(reinterpret_cast<const char*>(flat.begin()),
                        flat.size() * 8);
  HotFields hot;
  EXPECT_EQ(ReadHotFields(view, &hot), LayoutResult::kUnsupported);
  MessageView decoded;
  ASSERT_TRUE(MessageViewDecoder::Decode(view, "t", &decoded).ok());
  EXPECT_EQ(decoded.key(), "a-key");
  EXPECT_EQ(decoded.body(), "0123456789abcdef0123456789");
  EXPECT_EQ(decoded.offset(), 77u);
}

TEST(RecordLayoutTest, DamagedRecordsNeverReadOutOfBounds) {
  std::mt19937 rng(7);
  Message m{.topic = "t", .key = "key", .body = std::string(300, 'b')};
  auto record = PendingRecord::Encode(m, 1, 1 << 20);
  ASSERT_TRUE(record.ok());
  int rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    Stored s = Store(*record);
    char* bytes = reinterpret_cast<char*>(s.words.get());
    for (int flips = 1 + rng() % 4; flips > 0; --flips) {
      bytes[rng() % 128] ^= static_cast<char>(1 << (rng() % 8));
    }
    MessageView view;
    if (!MessageViewDecoder::Decode(s.view, "t", &view).ok()) {
      ++rejected;
      continue;
    }
    EXPECT_TRUE(Inside(view.key(), s.view));
    EXPECT_TRUE(Inside(view.body(), s.view));
  }
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace txmq
