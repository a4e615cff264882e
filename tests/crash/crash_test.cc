// kill -9 while sending (DESIGN.md guarantee 1): a child process sends and
// records every acknowledged id in a side file; the parent kills it at a
// random moment, reopens the directory and checks that every acknowledged
// message is stored, intact, at the queue and offset the child was told.

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>

#include "absl/strings/str_format.h"
#include "child_process.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/txmq.h"

namespace txmq {
namespace {

using ::txmq::testing::ChildProcess;
using ::txmq::testing::ExpectDirectoryVerifies;
using ::txmq::testing::TempDir;

struct Acked {
  uint32_t queue;
  uint64_t offset;
};

// Complete lines of the side file: id -> (queue, offset).
std::map<std::string, Acked> ReadSideFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  std::map<std::string, Acked> acked;
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos;
       start = nl + 1) {
    std::istringstream line(text.substr(start, nl - start));
    std::string id;
    Acked a;
    if (line >> id >> a.queue >> a.offset) acked[id] = a;
  }
  return acked;
}

// Complete lines of a side file of ids.
std::set<std::string> ReadIds(const std::string& path) {
  std::ifstream in(path);
  std::set<std::string> ids;
  for (std::string line; std::getline(in, line);) {
    if (line.size() == 32) ids.insert(line);  // a torn last line is shorter
  }
  return ids;
}

void KillWhileSending(const std::string& mode, int kills) {
  TempDir tmp;
  const std::string dir = tmp.Sub("data");
  const std::string side = tmp.Sub("acked.txt");
  std::mt19937 rng(std::random_device{}());
  size_t total_acked = 0;
  for (int round = 0; round < kills; ++round) {
    {
      ChildProcess child({"send", dir, side, "8", mode});
      ASSERT_TRUE(child.ok()) << "round " << round;
      absl::SleepFor(
          absl::Milliseconds(std::uniform_int_distribution<int>(5, 150)(rng)));
      const int status = child.Kill();
      ASSERT_TRUE(WIFSIGNALED(status))
          << "the child died on its own: " << status;
    }
    const std::map<std::string, Acked> acked = ReadSideFile(side);
    total_acked = acked.size();
    // As the kill left it, before any recovery: every table agrees.
    ExpectDirectoryVerifies(dir, "round " + std::to_string(round));

    auto broker = Broker::Open(dir);
    ASSERT_TRUE(broker.ok()) << "round " << round << ": " << broker.status();
    auto consumer =
        (*broker)->CreateConsumer("verify-" + std::to_string(round), "crash");
    ASSERT_TRUE(consumer.ok()) << consumer.status();
    std::map<std::string, Acked> stored;
    while (true) {
      auto batch = (*consumer)->Receive(10000, absl::ZeroDuration());
      ASSERT_TRUE(batch.ok()) << batch.status();
      if (batch->empty()) break;
      for (const MessageView& m : *batch) {
        ASSERT_EQ(m.body().substr(0, 1), "t");
        ASSERT_EQ(m.id().offset(), m.offset());
        stored[m.id().ToString()] = Acked{m.queue(), m.offset()};
      }
    }
    for (const auto& [id, a] : acked) {
      auto it = stored.find(id);
      ASSERT_NE(it, stored.end())
          << "round " << round << ": acknowledged message " << id << " lost";
      EXPECT_EQ(it->second.queue, a.queue);
      EXPECT_EQ(it->second.offset, a.offset);
    }
    // Offsets are dense in every queue (nothing half-written).
    auto info = (*broker)->DescribeTopic("crash");
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->message_count(), stored.size());
  }
  ::testing::Test::RecordProperty("acknowledged_messages_checked",
                                  static_cast<int>(total_acked));
  EXPECT_GT(total_acked, 0u);
}

// At-least-once delivery with acknowledgements: a consumer process is
// killed at random moments while it consumes and acknowledges. After each
// kill, every message it never acknowledged is delivered to the group
// again (an acknowledged one may be too, if its offset was not written).
TEST(CrashTest, UnacknowledgedMessagesAreDeliveredAfterKill9) {
  TempDir tmp;
  const std::string dir = tmp.Sub("data");
  const std::string side = tmp.Sub("acked.txt");
  std::set<std::string> all;
  {
    auto broker = Broker::Open(dir);
    ASSERT_TRUE(broker.ok()) << broker.status();
    TXMQ_ASSERT_OK((*broker)->CreateTopic("crash", {.queues = 4}));
    auto producer = (*broker)->CreateProducer();
    TXMQ_ASSERT_OK(producer);
    for (int b = 0; b < 200; ++b) {
      std::vector<Message> batch;
      for (int i = 0; i < 400; ++i) {
        batch.push_back(
            {.topic = "crash", .body = absl::StrFormat("m%d-%d", b, i)});
      }
      auto sent = (*producer)->SendBatch(batch);
      TXMQ_ASSERT_OK(sent);
      for (const SendResult& r : *sent) all.insert(r.id.ToString());
    }
  }
  std::mt19937 rng(std::random_device{}());
  size_t redelivered_acked = 0;
  int kills = 0;
  for (int round = 0; round < 16; ++round) {
    {
      ChildProcess child({"consume", dir, side, "4"});
      ASSERT_TRUE(child.ok()) << "round " << round;
      absl::SleepFor(
          absl::Milliseconds(std::uniform_int_distribution<int>(10, 200)(rng)));
      const int status = child.Kill();
      ASSERT_TRUE(WIFSIGNALED(status))
          << "the child died on its own: " << status;
      ++kills;
    }
    const std::set<std::string> acked = ReadIds(side);
    ExpectDirectoryVerifies(dir, "round " + std::to_string(round));
    // What the group gets now (not acknowledged: the next round resumes).
    auto broker = Broker::Open(dir);
    ASSERT_TRUE(broker.ok()) << broker.status();
    auto consumer = (*broker)->CreateConsumer("workers", "crash");
    TXMQ_ASSERT_OK(consumer);
    std::set<std::string> delivered;
    std::vector<ReceivedBatch> held;
    while (true) {
      auto batch = (*consumer)->Receive(10000, absl::ZeroDuration());
      TXMQ_ASSERT_OK(batch);
      if (batch->empty()) break;
      for (const MessageView& m : *batch) delivered.insert(m.id().ToString());
      held.push_back(*std::move(batch));
    }
    for (const std::string& id : all) {
      if (acked.contains(id)) {
        redelivered_acked += delivered.contains(id);
      } else {
        ASSERT_TRUE(delivered.contains(id))
            << "round " << round << ": message " << id
            << " was never acknowledged and is not delivered again";
      }
    }
    if (delivered.empty()) break;  // all consumed
  }
  // An acknowledgement reaches the disk with the writer's next commit, so
  // few acknowledged messages come back.
  std::printf("%d kills; acknowledged messages delivered again: %zu\n", kills,
              redelivered_acked);
  ::testing::Test::RecordProperty("kills", kills);
  EXPECT_GT(ReadIds(side).size(), 0u);
  EXPECT_GE(kills, 8);
}

TEST(CrashTest, AcknowledgedSyncSendsSurviveKill9) {
  KillWhileSending("sync", 24);
}

TEST(CrashTest, AcknowledgedAsyncSendsSurviveKill9) {
  KillWhileSending("async", 12);
}

}  // namespace
}  // namespace txmq
