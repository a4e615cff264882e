// The key index (lib/log/key_index.h): written with every keyed message,
// deleted with it by retention and topic deletion, filled at open for a
// directory an older build wrote, and checked by Inspector::Verify.

#include "log/key_index.h"

#include <lmdb.h>

#include <string>
#include <vector>

#include "broker_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace txmq::testing {
namespace {

using ::testing::HasSubstr;

TEST(KeyIndexRowTest, RoundTripsAndKeepsKeysApart) {
  const std::string row = KeyIndexRow(7, "o-1", 42);
  KeyIndexEntry e;
  ASSERT_TRUE(ParseKeyIndexRow(row, &e));
  EXPECT_EQ(e.number, 7u);
  EXPECT_EQ(e.indexed_key, "o-1");
  EXPECT_EQ(e.offset, 42u);
  // A key is never a prefix range of another's rows.
  EXPECT_FALSE(KeyIndexRow(7, "o-1", 0).starts_with(KeyIndexPrefix(7, "o")));
  EXPECT_FALSE(KeyIndexRow(8, "o", 0).starts_with(KeyIndexPrefix(7, "o")));
  // Long keys: a prefix and a hash, within LMDB's 511-byte key limit.
  const std::string a(1024, 'a');
  std::string b = a;
  b.back() = 'b';
  EXPECT_LE(KeyIndexRow(1, a, 0).size(), 511u);
  EXPECT_NE(KeyIndexPrefix(1, a), KeyIndexPrefix(1, b));
  const std::string long_row = KeyIndexRow(1, a, 5);
  ASSERT_TRUE(ParseKeyIndexRow(long_row, &e));
  EXPECT_TRUE(KeyIndexes(a, e.indexed_key));
  EXPECT_FALSE(KeyIndexes(b, e.indexed_key));
  EXPECT_FALSE(ParseKeyIndexRow("short", &e));
}

class KeyIndexTest : public BrokerFixture {
 protected:
  void SetUp() override {
    options_.retention_check_interval = absl::Seconds(1);
    queues_ = 1;  // one queue: retention keeps only its last message
    BrokerFixture::SetUp();
  }

  void Send(const std::string& key, int n = 1) {
    for (int i = 0; i < n; ++i) {
      TXMQ_ASSERT_OK(producer_->Send({.topic = topic_,
                                      .key = key,
                                      .body = key + "#" + std::to_string(i)}));
    }
  }

  // Closes the broker and runs `fn` with an Inspector.
  void Inspect(const std::function<void(Inspector&)>& fn) {
    producer_.reset();
    broker_.reset();
    auto inspector = Inspector::Open(tmp_.path());
    TXMQ_ASSERT_OK(inspector);
    fn(**inspector);
  }

  std::vector<std::string> Bodies(Inspector& in, const std::string& key) {
    auto found = in.FindByKey(topic_, key, 100);
    EXPECT_TRUE(found.ok()) << found.status();
    std::vector<std::string> bodies;
    if (found.ok()) {
      for (const auto& m : *found) bodies.push_back(m.body);
    }
    return bodies;
  }

  void ExpectVerified(Inspector& in) {
    auto report = in.Verify();
    TXMQ_ASSERT_OK(report);
    EXPECT_TRUE(report->ok()) << report->problems[0];
  }

  // Runs `fn` in a write transaction of the directory's environment,
  // behind txmq's back (the broker must be closed).
  void RawWrite(
      const std::function<void(MDB_txn*, MDB_dbi meta, MDB_dbi index)>& fn) {
    MDB_env* env = nullptr;
    ASSERT_EQ(mdb_env_create(&env), MDB_SUCCESS);
    mdb_env_set_maxdbs(env, 2048);
    ASSERT_EQ(mdb_env_open(env, tmp_.path().c_str(), 0, 0644), MDB_SUCCESS);
    MDB_txn* txn;
    MDB_dbi meta, index;
    ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), MDB_SUCCESS);
    ASSERT_EQ(mdb_dbi_open(txn, "meta", 0, &meta), MDB_SUCCESS);
    ASSERT_EQ(mdb_dbi_open(txn, "key_index", 0, &index), MDB_SUCCESS);
    fn(txn, meta, index);
    EXPECT_EQ(mdb_txn_commit(txn), MDB_SUCCESS);
    mdb_env_close(env);
  }
};

TEST_F(KeyIndexTest, FindsExactlyTheKeysMessages) {
  const std::string long_a(1000, 'k');
  std::string long_b = long_a;
  long_b.back() = 'z';
  Send("o", 2);
  Send("o-1", 3);
  Send(long_a);
  Send(long_b);
  Send("");
  Inspect([&](Inspector& in) {
    EXPECT_EQ(Bodies(in, "o"), (std::vector<std::string>{"o#0", "o#1"}));
    EXPECT_EQ(Bodies(in, "o-1").size(), 3u);
    EXPECT_EQ(Bodies(in, long_a), std::vector<std::string>{long_a + "#0"});
    EXPECT_EQ(Bodies(in, long_b), std::vector<std::string>{long_b + "#0"});
    EXPECT_TRUE(Bodies(in, "o-").empty());
    EXPECT_EQ(in.FindByKey(topic_, "o-1", 2)->size(), 2u);
    ExpectVerified(in);
  });
}

TEST_F(KeyIndexTest, RetentionDeletesTheRowsOfWhatItDeletes) {
  TXMQ_ASSERT_OK(broker_->SetTopicRetention(topic_, absl::Seconds(1)));
  Send("old", 4);
  clock_->Advance(absl::Minutes(1));
  Send("new");
  Send("new2");  // the queue's last message: retention keeps it
  clock_->Advance(absl::Seconds(2));
  ASSERT_TRUE(
      Eventually([&] { return broker_->Stats().expired_messages == 5; }));
  Inspect([&](Inspector& in) {
    EXPECT_TRUE(Bodies(in, "old").empty());
    EXPECT_TRUE(Bodies(in, "new").empty());
    EXPECT_EQ(Bodies(in, "new2").size(), 1u);
    ExpectVerified(in);
  });
}

TEST_F(KeyIndexTest, DeletingATopicDeletesItsRows) {
  Send("gone", 3);
  TXMQ_ASSERT_OK(broker_->DeleteTopic(topic_));
  TXMQ_ASSERT_OK(broker_->CreateTopic(topic_, {.queues = 2}));
  Send("kept");
  Open();  // a restart: the dropped tables are gone by now
  Inspect([&](Inspector& in) {
    EXPECT_TRUE(Bodies(in, "gone").empty());
    EXPECT_EQ(Bodies(in, "kept").size(), 1u);
    ExpectVerified(in);
  });
}

TEST_F(KeyIndexTest, OpenFillsTheIndexOfADirectoryFromAnOlderBuild) {
  Send("a", 3);
  Send("b", 2);
  producer_.reset();
  broker_.reset();
  // What an older build leaves: no key_index table at all.
  RawWrite([](MDB_txn* txn, MDB_dbi, MDB_dbi index) {
    ASSERT_EQ(mdb_drop(txn, index, 1), MDB_SUCCESS);
  });
  // Without an index, a lookup reads everything, and still finds them.
  Inspect([&](Inspector& in) { EXPECT_EQ(Bodies(in, "a").size(), 3u); });
  Open();  // fills the index
  Send("a");
  Inspect([&](Inspector& in) {
    EXPECT_EQ(Bodies(in, "a").size(), 4u);
    EXPECT_EQ(Bodies(in, "b").size(), 2u);
    ExpectVerified(in);
  });
}

TEST_F(KeyIndexTest, VerifyFindsMissingAndStaleRows) {
  Send("a", 2);
  auto info = broker_->DescribeTopic(topic_);
  TXMQ_ASSERT_OK(info);
  producer_.reset();
  broker_.reset();
  // The fixture's only topic has queue numbers 0 (and no others).
  const uint32_t number = 0;
  ASSERT_EQ(info->queues[0].end_offset, 2u);
  RawWrite([&](MDB_txn* txn, MDB_dbi, MDB_dbi index) {
    std::string row = KeyIndexRow(number, "a", 0);
    MDB_val k{row.size(), row.data()};
    ASSERT_EQ(mdb_del(txn, index, &k, nullptr), MDB_SUCCESS);
    std::string stale = KeyIndexRow(number, "a", 99);
    MDB_val s{stale.size(), stale.data()}, none{0, nullptr};
    ASSERT_EQ(mdb_put(txn, index, &s, &none, 0), MDB_SUCCESS);
  });
  Inspect([&](Inspector& in) {
    auto report = in.Verify();
    TXMQ_ASSERT_OK(report);
    ASSERT_EQ(report->problems.size(), 2u);
    EXPECT_THAT(report->problems[0], HasSubstr("no key_index row"));
    EXPECT_THAT(report->problems[1], HasSubstr("offset 99: no such message"));
  });
}

}  // namespace
}  // namespace txmq::testing
