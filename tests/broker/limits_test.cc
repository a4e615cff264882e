// Every limit of include/txmq/message.h and of names, at the limit and one
// past it (issue 7), through the in-process broker and through RPC (a
// RemoteBroker, whose server checks what arrives before it converts it):
// at the limit a message is stored and comes back byte for byte; one past
// it is INVALID_ARGUMENT and stores nothing.

#include <memory>
#include <string>
#include <vector>

#include "broker_fixture.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/remote_broker.h"
#include "txmq/rpc_server.h"
#include "txmq/txmq.h"

namespace txmq::testing {
namespace {

struct Case {
  std::string name;
  Message message;  // its topic is filled in by the test
};

std::string Bytes(size_t n, char c) { return std::string(n, c); }

std::vector<Case> AtTheLimits(size_t max_message_bytes) {
  std::vector<Case> cases;
  cases.push_back({"key of 1024 bytes, any bytes",
                   {.key = std::string("\0\xff\n|%", 5) + Bytes(1019, 'k')}});
  {
    Message m;
    for (int i = 0; i < 32; ++i) {
      m.tags.push_back(Bytes(127, 'a' + i % 26) +
                       static_cast<char>('0' + i % 10));
    }
    cases.push_back({"32 tags of 128 bytes", m});
  }
  {
    Message m;
    for (int i = 0; i < 256; ++i) {
      m.properties.emplace_back(Bytes(125, 'n') + std::to_string(100 + i), "v");
    }
    cases.push_back({"256 properties with names of 128 bytes", m});
  }
  cases.push_back({"a property value of 32 KiB",
                   {.properties = {{"p", Bytes(32 * 1024, 'v')}}}});
  cases.push_back({"an empty property value", {.properties = {{"p", ""}}}});
  cases.push_back({"an empty body", {.body = ""}});
  cases.push_back({"a body just under max_message_bytes",
                   {.body = Bytes(max_message_bytes - 256, 'b')}});
  return cases;
}

std::vector<Case> PastTheLimits(size_t max_message_bytes) {
  std::vector<Case> cases;
  cases.push_back({"key of 1025 bytes", {.key = Bytes(1025, 'k')}});
  cases.push_back({"33 tags", {.tags = std::vector<std::string>(33, "t")}});
  cases.push_back({"a tag of 129 bytes", {.tags = {Bytes(129, 't')}}});
  cases.push_back({"an empty tag", {.tags = {""}}});
  cases.push_back({"a tag with '|'", {.tags = {"a|b"}}});
  {
    Message m;
    for (int i = 0; i < 257; ++i) {
      m.properties.emplace_back("p" + std::to_string(i), "v");
    }
    cases.push_back({"257 properties", m});
  }
  cases.push_back({"a property name of 129 bytes",
                   {.properties = {{Bytes(129, 'n'), "v"}}}});
  cases.push_back({"an empty property name", {.properties = {{"", "v"}}}});
  cases.push_back({"a property value of 32 KiB + 1",
                   {.properties = {{"p", Bytes(32 * 1024 + 1, 'v')}}}});
  cases.push_back(
      {"a property named twice", {.properties = {{"p", "1"}, {"p", "2"}}}});
  cases.push_back(
      {"a body of max_message_bytes", {.body = Bytes(max_message_bytes, 'b')}});
  Message late{.body = "late"};
  late.deliver_at = absl::Now() + absl::Hours(24 * 367);
  cases.push_back({"a delay of more than 366 days", late});
  return cases;
}

// The in-process broker, or the same broker through RPC.
class LimitsTest : public BrokerFixture,
                   public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    options_.max_message_bytes = 256 * 1024;
    options_.max_queues = 4096;  // room for a topic of 1024 besides others
    clock_ = nullptr;            // delays are checked against the real clock
    BrokerFixture::SetUp();
    if (!GetParam()) return;
    auto server =
        RpcServer::Start(*broker_, {.listen = "unix:" + tmp_.Sub("mq.sock")});
    TXMQ_ASSERT_OK(server);
    server_ = *std::move(server);
    auto remote = RemoteBroker::Connect(server_->address());
    TXMQ_ASSERT_OK(remote);
    remote_ = *std::move(remote);
    auto producer = remote_->CreateProducer();
    TXMQ_ASSERT_OK(producer);
    remote_producer_ = *std::move(producer);
  }
  void TearDown() override {
    remote_producer_.reset();
    remote_.reset();
    if (server_ != nullptr) server_->Stop();
  }

  Producer& producer() { return GetParam() ? *remote_producer_ : *producer_; }
  absl::Status CreateTopic(const std::string& name, uint32_t queues) {
    return GetParam() ? remote_->CreateTopic(name, {.queues = queues})
                      : broker_->CreateTopic(name, {.queues = queues});
  }
  uint64_t Count() { return broker_->DescribeTopic(topic_)->message_count(); }

  std::unique_ptr<RpcServer> server_;
  std::unique_ptr<RemoteBroker> remote_;
  std::unique_ptr<Producer> remote_producer_;
};

TEST_P(LimitsTest, AtTheLimitIsStoredByteForByte) {
  auto consumer = broker_->CreateConsumer("g", topic_);
  TXMQ_ASSERT_OK(consumer);
  for (Case c : AtTheLimits(options_.max_message_bytes)) {
    c.message.topic = topic_;
    auto sent = producer().Send(c.message);
    ASSERT_TRUE(sent.ok()) << c.name << ": " << sent.status();
    auto batch = (*consumer)->Receive(1, absl::Seconds(5));
    ASSERT_TRUE(batch.ok()) << c.name << ": " << batch.status();
    ASSERT_EQ(batch->size(), 1u) << c.name;
    const MessageView& m = (*batch)[0];
    EXPECT_EQ(m.id(), sent->id) << c.name;
    EXPECT_EQ(m.key(), c.message.key) << c.name;
    EXPECT_TRUE(m.body() == c.message.body) << c.name;
    const std::vector<std::string_view> views = m.tags();
    const std::vector<std::string> tags(views.begin(), views.end());
    EXPECT_EQ(tags, c.message.tags) << c.name;
    std::vector<std::pair<std::string, std::string>> properties;
    for (const auto& [name, value] : m.properties()) {
      properties.emplace_back(name, value);
    }
    EXPECT_EQ(properties, c.message.properties) << c.name;
    TXMQ_ASSERT_OK((*consumer)->Ack(*batch));
  }
}

TEST_P(LimitsTest, PastTheLimitIsInvalidAndStoresNothing) {
  for (Case c : PastTheLimits(options_.max_message_bytes)) {
    c.message.topic = topic_;
    const uint64_t before = Count();
    absl::StatusOr<SendResult> sent = producer().Send(c.message);
    EXPECT_EQ(sent.status().code(), absl::StatusCode::kInvalidArgument)
        << c.name << ": " << sent.status();
    EXPECT_EQ(Count(), before) << c.name;
    // A batch with one bad message stores none of it.
    if (!GetParam()) {
      auto batch = producer().SendBatch(
          {Message{.topic = topic_, .body = "fine"}, c.message});
      EXPECT_EQ(batch.status().code(), absl::StatusCode::kInvalidArgument)
          << c.name;
      EXPECT_EQ(Count(), before) << c.name;
    }
  }
}

TEST_P(LimitsTest, NamesAndQueuesAtAndPastTheLimit) {
  const std::string longest(127, 'n');
  TXMQ_EXPECT_OK(CreateTopic(longest, 1));
  EXPECT_EQ(CreateTopic(std::string(128, 'n'), 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateTopic("", 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateTopic("a b", 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateTopic("%RETRY%x", 1).code(),
            absl::StatusCode::kInvalidArgument);
  TXMQ_EXPECT_OK(CreateTopic("widest", 1024));
  EXPECT_EQ(CreateTopic("too-wide", 1025).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateTopic("none", 0).code(), absl::StatusCode::kInvalidArgument);
  TXMQ_EXPECT_OK(broker_->CreateConsumer(longest, longest));
  EXPECT_EQ(
      broker_->CreateConsumer(std::string(128, 'g'), longest).status().code(),
      absl::StatusCode::kInvalidArgument);
  TXMQ_EXPECT_OK(producer().Send({.topic = longest, .body = "x"}));
}

INSTANTIATE_TEST_SUITE_P(Paths, LimitsTest, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? "Rpc" : "InProcess";
                         });

}  // namespace
}  // namespace txmq::testing
