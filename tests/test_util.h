// Helpers shared by the tests.

#ifndef TXMQ_TESTS_TEST_UTIL_H_
#define TXMQ_TESTS_TEST_UTIL_H_

#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "txmq/inspector.h"

namespace txmq::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr ? base : "/tmp") + "/txmq-test-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Polls `done` every 2 ms (real time) until it is true or 20 s passed;
// returns its last answer. For waiting on background threads, never for
// asserting how long something takes.
// The whole content of a file ("" when it cannot be read).
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// `txmq verify` of `dir`: every table agrees with every other
// (Inspector::Verify). No Broker of this process may have `dir` open.
inline void ExpectDirectoryVerifies(const std::string& dir,
                                    const std::string& context) {
  auto inspector = Inspector::Open(dir);
  ASSERT_TRUE(inspector.ok()) << context << ": " << inspector.status();
  auto report = (*inspector)->Verify();
  ASSERT_TRUE(report.ok()) << context << ": " << report.status();
  EXPECT_TRUE(report->ok()) << context << ": " << report->problems.size()
                            << " problems, the first: " << report->problems[0];
}

// The page number of the main table's root in the bytes of a data file:
// the newest of the two meta pages names it (LMDB 0.9's layout, 4 KiB
// pages: MDB_meta after the 16-byte page header; its main table record at
// 72, the root at 40 in it; the transaction id at 128).
inline uint64_t MainTableRootPage(const std::string& data_file) {
  uint64_t txn[2] = {0, 0}, root[2] = {0, 0};
  for (int m = 0; m < 2 && data_file.size() >= 2 * 4096; ++m) {
    std::memcpy(&txn[m], data_file.data() + m * 4096 + 16 + 128, 8);
    std::memcpy(&root[m], data_file.data() + m * 4096 + 16 + 72 + 40, 8);
  }
  return txn[0] > txn[1] ? root[0] : root[1];
}

inline bool Eventually(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return done();
}

inline const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

}  // namespace txmq::testing

// Fails the test with the status's message unless it is OK.
#define TXMQ_ASSERT_OK(expr)                                        \
  do {                                                              \
    const absl::Status txmq_s_ = ::txmq::testing::StatusOf((expr)); \
    ASSERT_TRUE(txmq_s_.ok()) << #expr << ": " << txmq_s_;          \
  } while (0)
#define TXMQ_EXPECT_OK(expr)                                        \
  do {                                                              \
    const absl::Status txmq_s_ = ::txmq::testing::StatusOf((expr)); \
    EXPECT_TRUE(txmq_s_.ok()) << #expr << ": " << txmq_s_;          \
  } while (0)

#endif  // TXMQ_TESTS_TEST_UTIL_H_
