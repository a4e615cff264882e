#include "topic/names.h"

#include <string>

#include "gtest/gtest.h"

namespace txmq {
namespace {

TEST(NamesTest, AcceptsOrdinaryNames) {
  for (const char* name : {"orders", "order-created", "a.b_c-D9", "x"}) {
    EXPECT_TRUE(ValidateName(name, NameKind::kTopic).ok()) << name;
  }
  EXPECT_TRUE(ValidateName(std::string(127, 'a'), NameKind::kGroup).ok());
}

TEST(NamesTest, RefusesWhatBreaksARule) {
  struct Case {
    std::string name;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {"", "empty"},
           {std::string(128, 'a'), "the limit is 127"},
           {"%RETRY%g", "reserved prefix '%RETRY%'"},
           {"%DLQ%g", "reserved prefix '%DLQ%'"},
           {"%SYS%x", "reserved prefix '%SYS%'"},
           {"a b", "contains ' '"},
           {"a/b", "contains '/'"},
           {std::string("a\0b", 3), "contains '\\x00'"},
           {"..", "reserved"},
       }) {
    absl::Status s = ValidateName(c.name, NameKind::kTopic);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(std::string(s.message()).find(c.says), std::string::npos)
        << s.message();
  }
}

TEST(NamesTest, BroadcastInstancesAndRetryTopics) {
  EXPECT_TRUE(ValidateProgressName("caches").ok());
  EXPECT_TRUE(ValidateProgressName("caches%0").ok());
  EXPECT_TRUE(ValidateProgressName("caches%host-a").ok());
  EXPECT_FALSE(ValidateProgressName("caches%").ok());
  EXPECT_FALSE(ValidateProgressName("%caches").ok());
  EXPECT_FALSE(ValidateProgressName("a%b%c").ok());
  EXPECT_EQ(RetryTopicName("g", "t"), "%RETRY%g%t");
  EXPECT_EQ(RetryTopicName("g%0", "t"), "%RETRY%g%0%t");
  EXPECT_EQ(DeadLetterTopicName("g"), "%DLQ%g");
  EXPECT_TRUE(IsRetryTopicOf("%RETRY%g%t", "t"));
  EXPECT_TRUE(IsRetryTopicOf("%RETRY%g%0%t", "t"));
  EXPECT_FALSE(IsRetryTopicOf("%RETRY%g%tt", "t"));
  EXPECT_FALSE(IsRetryTopicOf("%RETRY%t", "t"));
  EXPECT_FALSE(IsRetryTopicOf("%DLQ%g%t", "t"));
  EXPECT_FALSE(IsRetryTopicOf("t", "t"));
}

}  // namespace
}  // namespace txmq
