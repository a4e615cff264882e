// Faults from the machine (issue 7): a disk that fills up, reader slots
// that run out. Each gets a clear status, damages nothing stored, and the
// broker works again once the fault is gone.

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "broker_fixture.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/inspector.h"
#include "txmq/txmq.h"

namespace txmq::testing {
namespace {

class FaultsTest : public BrokerFixture {
 protected:
  void CloseClients() override { held_.clear(); }

  // Every message of topic_ by id, as a fresh group receives it now.
  std::map<std::string, std::string> Stored() {
    auto consumer =
        broker_->CreateConsumer("check-" + std::to_string(++n_), topic_);
    EXPECT_TRUE(consumer.ok()) << consumer.status();
    std::map<std::string, std::string> out;
    while (true) {
      auto batch = (*consumer)->Receive(10000, absl::ZeroDuration());
      EXPECT_TRUE(batch.ok()) << batch.status();
      if (!batch.ok() || batch->empty()) break;
      for (const MessageView& m : *batch) {
        out[m.id().ToString()] = std::string(m.body());
      }
    }
    return out;
  }

  std::vector<ReceivedBatch> held_;
  int n_ = 0;
};

// The disk is full, as far as the data file is concerned: a file-size
// limit (RLIMIT_FSIZE) stops it from growing, as a full filesystem would
// (EFBIG instead of ENOSPC; both are RESOURCE_EXHAUSTED).
TEST_F(FaultsTest, AFullDiskIsResourceExhaustedAndRecovers) {
  // Without this, exceeding the limit kills the process (SIGXFSZ).
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction old_action {};
  ASSERT_EQ(sigaction(SIGXFSZ, &ignore, &old_action), 0);
  struct rlimit old_limit {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);

  std::map<std::string, std::string> acked;
  auto send = [&](int i) {
    const std::string body = std::string(16000, 'a' + i % 26);
    absl::StatusOr<SendResult> sent =
        producer_->Send({.topic = topic_, .body = body});
    if (sent.ok()) acked[sent->id.ToString()] = body;
    return sent.status();
  };
  for (int i = 0; i < 50; ++i) TXMQ_ASSERT_OK(send(i));

  struct stat st {};
  ASSERT_EQ(stat(tmp_.Sub("data.mdb").c_str(), &st), 0);
  struct rlimit full = old_limit;
  full.rlim_cur = static_cast<rlim_t>(st.st_size);  // no growth from here
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &full), 0);
  absl::Status last;
  int i = 50;
  for (; i < 50 + 20000 && last.ok(); ++i) last = send(i);
  // What the limit refused, and then some more, while the disk is full.
  absl::Status again = send(i++);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  ASSERT_EQ(sigaction(SIGXFSZ, &old_action, nullptr), 0);

  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted) << last;
  EXPECT_EQ(again.code(), absl::StatusCode::kResourceExhausted) << again;
  EXPECT_GT(acked.size(), 50u);  // the prefilled space was used first
  // Space is back: the same broker writes again.
  TXMQ_EXPECT_OK(send(i++));
  // Everything acknowledged is stored, intact, and every table agrees.
  EXPECT_EQ(Stored(), acked);
  producer_.reset();
  broker_.reset();
  ExpectDirectoryVerifies(tmp_.path(), "after the disk was full");
  Open();
  EXPECT_EQ(Stored(), acked);
}

// Every LMDB reader slot taken by held batches: a Receive that needs one
// more gets RESOURCE_EXHAUSTED (naming Options::max_readers), sends go on,
// and releasing the batches makes room again.
class ReaderSlotsTest : public FaultsTest {
 protected:
  // Before the first open: LMDB sizes the reader table when it creates
  // lock.mdb, and later opens keep a bigger one.
  ReaderSlotsTest() { options_.max_readers = 8; }
};

TEST_F(ReaderSlotsTest, ReaderSlotsRunOutAndComeBack) {
  for (int i = 0; i < 200; ++i) {
    TXMQ_ASSERT_OK(producer_->Send({.topic = topic_, .body = "m"}));
  }
  std::vector<std::unique_ptr<Consumer>> consumers;
  absl::Status refused;
  for (int i = 0; i < 64 && refused.ok(); ++i) {
    // A group of its own each: every batch is another open snapshot.
    auto consumer =
        broker_->CreateConsumer("holder-" + std::to_string(i), topic_);
    TXMQ_ASSERT_OK(consumer);
    auto batch = (*consumer)->Receive(1, absl::ZeroDuration());
    if (batch.ok()) {
      ASSERT_EQ(batch->size(), 1u);
      held_.push_back(*std::move(batch));
    } else {
      refused = batch.status();
    }
    consumers.push_back(*std::move(consumer));
  }
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_NE(refused.message().find("max_readers"), std::string::npos)
      << refused;
  EXPECT_LE(held_.size(), 8u);
  // Writes need no reader slot.
  TXMQ_EXPECT_OK(producer_->Send({.topic = topic_, .body = "still"}));
  held_.clear();
  {
    auto batch = consumers.back()->Receive(1, absl::ZeroDuration());
    TXMQ_ASSERT_OK(batch);
    EXPECT_EQ(batch->size(), 1u);
  }
  consumers.clear();
  EXPECT_EQ(Stored().size(), 201u);
}

}  // namespace
}  // namespace txmq::testing
