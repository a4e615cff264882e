// Env: the LMDB environment of one data directory, and the rules around it.
//
//   DIR/data.mdb    the LMDB data file (all tables)
//   DIR/lock.mdb    LMDB's reader table
//   DIR/txmq.lock   held with flock(LOCK_EX) by the one process that owns
//                   DIR for writing; holds that process's pid, for errors
//
// Open() refuses a directory that this process already has open (LMDB allows
// one environment per file per process) or that another process owns, a
// data file that is not LMDB, an LMDB environment that is not txmq's, and a
// format version newer than this build. It creates and stamps a new
// directory when there is nothing in it.
//
// Growth: the map starts at `initial_map_bytes` and the writer doubles it
// (see NeedsGrowth and Grow) before it fills, so MDB_MAP_FULL never reaches
// a caller while the disk has room.
//
// Thread rules: Open and the destructor from one thread. env(), gate() and
// the table handles from any thread. Grow from the writer thread only, with
// no transaction of this process open except those the gate waits for.

#ifndef TXMQ_LIB_STORAGE_ENV_H_
#define TXMQ_LIB_STORAGE_ENV_H_

#include <lmdb.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "storage/map_gate.h"

namespace txmq {

// The format version this build writes and the newest it reads.
inline constexpr uint32_t kFormatVersion = 1;

class Env {
 public:
  struct Config {
    size_t initial_map_bytes = size_t{1} << 30;
    // 0: grow while the disk has room.
    size_t max_map_bytes = 0;
    // Named tables besides the internal ones (one per queue).
    uint32_t max_queue_tables = 1024;
    // Host tables (include/txmq/local_transaction.h), named "t.<name>".
    uint32_t max_host_tables = 0;
    uint32_t max_readers = 256;
    // false: commits do not fsync (MDB_NOSYNC); call Sync().
    bool sync_commits = true;
    bool create_if_missing = true;
  };

  // Errors: NOT_FOUND (no directory and !create_if_missing),
  // FAILED_PRECONDITION (open in this or another process; foreign LMDB
  // environment; newer format), DATA_LOSS (data.mdb is not LMDB or is
  // damaged), PERMISSION_DENIED (cannot write the directory),
  // RESOURCE_EXHAUSTED (no memory or disk for the map).
  static absl::StatusOr<std::unique_ptr<Env>> Open(std::string_view dir,
                                                   const Config& config);
  ~Env();
  Env(const Env&) = delete;

  // The process-wide registry of open directories (by device and inode),
  // which Open uses and other LMDB environments of the process (the
  // Inspector's) join: LMDB allows one environment per file per process.
  // Register returns false when the directory is open already.
  static bool Register(uint64_t dev, uint64_t ino);
  static void Unregister(uint64_t dev, uint64_t ino);
  Env& operator=(const Env&) = delete;

  MDB_env* env() const { return env_; }
  MapGate& gate() { return gate_; }
  const std::string& dir() const { return dir_; }
  const Config& config() const { return config_; }

  // Internal tables, opened once by Open().
  MDB_dbi meta_table() const { return meta_; }
  MDB_dbi cursor_table() const { return cursor_; }
  // The transaction tables (txn/txn_store.h).
  MDB_dbi half_table() const { return half_; }
  MDB_dbi outcome_table() const { return outcome_; }
  MDB_dbi timer_table() const { return timer_; }
  // Delayed messages (delay/delay_writer.h).
  MDB_dbi delay_table() const { return delay_; }
  // The key index (log/key_index.h).
  MDB_dbi key_index_table() const { return key_index_; }
  // True when the key index of a directory that had messages before it
  // (an older build wrote it) is not filled yet: the broker fills it at
  // open (lib/log/key_index.h, BuildKeyIndex) and then deletes the meta
  // row "key_index_pending" that says so.
  bool key_index_created() const { return key_index_created_; }
  // Deletes "key_index_pending" (durably) once the index is filled.
  absl::Status FinishKeyIndex();

  // Map size in bytes, and the bytes in use (the high-water mark of pages;
  // LMDB reuses freed pages below it) as of the last RefreshUsage. Both are
  // safe from any thread: they never touch the map, which may be moving.
  size_t map_bytes() const {
    return map_bytes_.load(std::memory_order_relaxed);
  }
  size_t used_bytes() const {
    return used_bytes_.load(std::memory_order_relaxed);
  }
  // Thread: writer (or Open). Re-reads the bytes in use from the map.
  void RefreshUsage();
  // True when the map is more than three quarters used.
  bool NeedsGrowth() const;
  // The size Grow() would move to, or an error when max_map_bytes forbids.
  absl::StatusOr<size_t> NextMapSize() const;
  // Remaps to NextMapSize(). The gate must be closed and empty.
  absl::Status Grow();

  // Frees the reader slots of processes that died with a read transaction
  // open (mdb_reader_check). Any thread.
  void ClearStaleReaders();
  uint64_t stale_readers_cleared() const {
    return stale_readers_cleared_.load(std::memory_order_relaxed);
  }

  // Flushes everything committed so far to disk (after MDB_NOSYNC commits).
  absl::Status Sync();

  // The status of a failed write (`rc` from a commit or a flush): when the
  // disk is full or the data file reached the process's file-size limit
  // (RLIMIT_FSIZE), RESOURCE_EXHAUSTED saying which, with the numbers;
  // LMDB reports a short write as EIO, so EIO is checked too. Otherwise
  // LmdbStatus(rc, what).
  absl::Status WriteError(int rc, std::string_view what) const;

  // Thread: writer, between transactions. Keeps the data file written with
  // zeros well past the pages in use (up to the map size), so that commits
  // overwrite blocks the file already has instead of growing it. A flush
  // that must also commit a new file size (an ext4 journal commit) costs
  // ~50-80 us more on this project's disk, and a kSync commit flushes twice.
  // Costs up to 16 MiB of disk space ahead of the data. The writer calls it
  // in kSync mode only (kAsync commits do not flush).
  absl::Status PrefillAhead();
  size_t file_bytes() const { return file_bytes_; }

 private:
  Env(std::string dir, const Config& config);
  absl::Status OpenLocked(bool existed);
  absl::Status CheckFormat(bool* fresh);

  const std::string dir_;
  const Config config_;
  MDB_env* env_ = nullptr;
  MDB_dbi meta_ = 0;
  MDB_dbi cursor_ = 0;
  MDB_dbi half_ = 0;
  MDB_dbi outcome_ = 0;
  MDB_dbi timer_ = 0;
  MDB_dbi delay_ = 0;
  MDB_dbi key_index_ = 0;
  bool key_index_created_ = false;
  int lock_fd_ = -1;
  uint64_t dir_key_[2] = {0, 0};
  bool registered_ = false;
  size_t page_bytes_ = 4096;
  std::atomic<size_t> map_bytes_{0};
  std::atomic<size_t> used_bytes_{0};
  std::atomic<uint64_t> stale_readers_cleared_{0};
  size_t file_bytes_ = 0;  // Thread: writer (and Open).
  MapGate gate_;
};

}  // namespace txmq

#endif  // TXMQ_LIB_STORAGE_ENV_H_
