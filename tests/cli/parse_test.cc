// The CLI's value parsers and output helpers.

#include "cli/parse.h"

#include "cli/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace txmq::cli {
namespace {

using ::testing::HasSubstr;

TEST(ParseDurationTest, AcceptsUnitsAndSums) {
  EXPECT_EQ(*ParseDuration("500ms"), absl::Milliseconds(500));
  EXPECT_EQ(*ParseDuration("30s"), absl::Seconds(30));
  EXPECT_EQ(*ParseDuration("72h"), absl::Hours(72));
  EXPECT_EQ(*ParseDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDuration("7d"), absl::Hours(168));
  EXPECT_EQ(*ParseDuration("1.5s"), absl::Milliseconds(1500));
  EXPECT_EQ(*ParseDuration("10us"), absl::Microseconds(10));
}

TEST(ParseDurationTest, RejectsWithAReason) {
  for (const char* bad : {"", "5", "5x", "s", "-1s", "0s", "1h-", "1..2s",
                          "1e9999h", "99999999999999999d", " 5s", "5 s"}) {
    absl::StatusOr<absl::Duration> d = ParseDuration(bad);
    EXPECT_FALSE(d.ok()) << bad;
    EXPECT_TRUE(absl::IsInvalidArgument(d.status())) << bad;
    EXPECT_THAT(std::string(d.status().message()), HasSubstr("500ms"));
  }
  EXPECT_THAT(std::string(ParseDuration("5").status().message()),
              HasSubstr("no unit"));
  EXPECT_THAT(std::string(ParseDuration("101y").status().message()),
              HasSubstr("unknown unit 'y'"));
  EXPECT_THAT(std::string(ParseDuration("36600d").status().message()),
              HasSubstr("100 years"));
}

TEST(ParseRetentionTest, ForeverOrADuration) {
  EXPECT_EQ(*ParseRetention("forever"), absl::InfiniteDuration());
  EXPECT_EQ(*ParseRetention("3d"), absl::Hours(72));
  EXPECT_THAT(std::string(ParseRetention("never").status().message()),
              HasSubstr("or forever"));
}

TEST(ParseTimestampTest, IsoAndUnixMilliseconds) {
  const absl::Time t = absl::FromUnixSeconds(1795685400);  // 2026-11-26 09:30
  EXPECT_EQ(*ParseTimestamp("2026-11-26T09:30:00Z"), t);
  EXPECT_EQ(*ParseTimestamp("2026-11-26T09:30:00"), t);
  EXPECT_EQ(*ParseTimestamp("2026-11-26T10:30:00+01:00"), t);
  EXPECT_EQ(*ParseTimestamp("2026-11-26T09:30:00.250Z"),
            t + absl::Milliseconds(250));
  EXPECT_EQ(*ParseTimestamp("2026-11-26"), t - absl::Minutes(570));
  EXPECT_EQ(*ParseTimestamp("1795685400000"), t);
  EXPECT_EQ(*ParseTimestamp("0"), absl::UnixEpoch());
}

TEST(ParseTimestampTest, RejectsWithAReason) {
  for (const char* bad :
       {"", "yesterday", "2026-13-01", "2026-11-26T25:00:00Z", "-5",
        "1795685400000000000000", "2026-11-26T09:30:00Zjunk", "1e12",
        "1969-12-31T23:59:59Z"}) {
    absl::StatusOr<absl::Time> t = ParseTimestamp(bad);
    EXPECT_FALSE(t.ok()) << bad;
    EXPECT_TRUE(absl::IsInvalidArgument(t.status())) << bad;
  }
  EXPECT_THAT(std::string(ParseTimestamp("soon").status().message()),
              HasSubstr("ISO-8601"));
}

TEST(ParsePropertyTest, NameEqualsValue) {
  EXPECT_EQ(*ParseProperty("a=b"),
            std::make_pair(std::string("a"), std::string("b")));
  EXPECT_EQ(*ParseProperty("a="),
            std::make_pair(std::string("a"), std::string("")));
  EXPECT_EQ(ParseProperty("a=b=c")->second, "b=c");
  EXPECT_FALSE(ParseProperty("=b").ok());
  EXPECT_FALSE(ParseProperty("ab").ok());
}

TEST(FormatTest, Utf8) {
  EXPECT_TRUE(IsUtf8("plain"));
  EXPECT_TRUE(IsUtf8("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsUtf8("\xff"));
  EXPECT_FALSE(IsUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsUtf8("\xe2\x82"));          // truncated
  EXPECT_FALSE(IsUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(IsUtf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(IsUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
}

TEST(FormatTest, Bodies) {
  EXPECT_EQ(BodyText("two\nlines"), "two\nlines");
  EXPECT_EQ(BodyText(std::string("\0\xff", 2)), "\\x00\\xff");
  EXPECT_EQ(BodyCell("two\nlines"), "two\\nlines");
  EXPECT_EQ(BodyCell(std::string(50, 'a'), 10), "aaaaaaa...");
  // Cut on a code point, never inside one.
  EXPECT_EQ(BodyCell("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 4),
            "\xc3\xa9...");
}

TEST(FormatTest, SizesTimesAges) {
  EXPECT_EQ(HumanBytes(512), "512 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(uint64_t{3} << 30), "3.0 GiB");
  EXPECT_EQ(IsoTime(absl::FromUnixMillis(1795685400250)),
            "2026-11-26T09:30:00.250Z");
  EXPECT_EQ(DurationText(absl::Hours(72)), "72h");
  EXPECT_EQ(DurationText(absl::InfiniteDuration()), "forever");
  EXPECT_EQ(Age(absl::Seconds(5)), "5s");
  EXPECT_EQ(Age(absl::Seconds(310)), "5m10s");
  EXPECT_EQ(Age(absl::Hours(50)), "2d2h");
  EXPECT_EQ(Age(-absl::Seconds(5)), "in 5s");
}

TEST(FormatTest, TableAlignsColumns) {
  Table t({"NAME", "N"});
  t.RightAlign({1});
  t.Add({"a", "1"});
  t.Add({"long name", "100"});
  char* buf = nullptr;
  size_t size = 0;
  FILE* f = open_memstream(&buf, &size);
  t.Print(f);
  std::fclose(f);
  EXPECT_EQ(std::string(buf, size),
            "NAME         N\n"
            "a            1\n"
            "long name  100\n");
  free(buf);
}

}  // namespace
}  // namespace txmq::cli
