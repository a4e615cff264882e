#include "storage/env.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "storage/keys.h"
#include "storage/lmdb_status.h"
#include "storage/page_check.h"
#include "util/status_macros.h"

namespace txmq {
namespace {

constexpr std::string_view kMagic = "txmq";
constexpr uint32_t kInternalTables = 8;
constexpr std::string_view kKeyIndexPendingKey = "key_index_pending";
constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kMaxGrowthStep = size_t{8} << 30;
// Prefill: when fewer than kPrefillLow bytes are written past the pages in
// use, write zeros up to kPrefillAhead past them.
constexpr size_t kPrefillLow = size_t{12} << 20;
constexpr size_t kPrefillAhead = size_t{16} << 20;

// Directories this process has open, by (device, inode): LMDB forbids
// opening one environment twice in a process (its locks are per process).
struct OpenDirs {
  absl::Mutex mu;
  absl::flat_hash_set<std::pair<uint64_t, uint64_t>> keys ABSL_GUARDED_BY(mu);
};

OpenDirs& Registry() {
  static OpenDirs* dirs = new OpenDirs;  // never destroyed: used at exit
  return *dirs;
}

absl::Status ErrnoStatus(int err, std::string_view what) {
  return LmdbStatus(err, what);  // errno values map through the same table
}

MDB_val Val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

}  // namespace

Env::Env(std::string dir, const Config& config)
    : dir_(std::move(dir)), config_(config) {}

bool Env::Register(uint64_t dev, uint64_t ino) {
  OpenDirs& reg = Registry();
  absl::MutexLock lock(&reg.mu);
  return reg.keys.insert({dev, ino}).second;
}

void Env::Unregister(uint64_t dev, uint64_t ino) {
  OpenDirs& reg = Registry();
  absl::MutexLock lock(&reg.mu);
  reg.keys.erase({dev, ino});
}

absl::StatusOr<std::unique_ptr<Env>> Env::Open(std::string_view dir,
                                               const Config& config) {
  std::string path(dir);
  if (path.empty()) {
    return absl::InvalidArgumentError("data directory path is empty");
  }
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    if (!config.create_if_missing) {
      return absl::NotFoundError(absl::StrFormat(
          "data directory '%s' does not exist; create it or open with "
          "create_if_missing",
          path));
    }
    std::filesystem::create_directories(path, ec);
    if (ec) {
      return ErrnoStatus(
          ec.value(),
          absl::StrFormat("cannot create data directory '%s'", path));
    }
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return ErrnoStatus(
        errno, absl::StrFormat("cannot access data directory '%s'", path));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "'%s' is not a directory; a txmq data directory is a directory", path));
  }

  auto env = std::unique_ptr<Env>(new Env(path, config));
  env->dir_key_[0] = st.st_dev;
  env->dir_key_[1] = st.st_ino;
  {
    OpenDirs& reg = Registry();
    absl::MutexLock lock(&reg.mu);
    if (!reg.keys.insert({st.st_dev, st.st_ino}).second) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "data directory '%s' is already open in this process (by a Broker "
          "or an Inspector); LMDB allows one environment per directory per "
          "process, so share the open Broker instead of opening it again",
          path));
    }
  }
  env->registered_ = true;

  const bool existed = std::filesystem::exists(path + "/data.mdb", ec);
  TXMQ_RETURN_IF_ERROR(env->OpenLocked(existed));
  return env;
}

absl::Status Env::OpenLocked(bool existed) {
  const std::string lock_path = dir_ + "/txmq.lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) {
    return ErrnoStatus(
        errno, absl::StrFormat("cannot open '%s' for writing (txmq needs a "
                               "writable data directory)",
                               lock_path));
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      char buf[32] = {};
      const ssize_t n = ::pread(lock_fd_, buf, sizeof(buf) - 1, 0);
      return absl::FailedPreconditionError(absl::StrFormat(
          "data directory '%s' is open by another process (pid %s); one "
          "process owns a directory at a time: stop it, or reach it through "
          "that process",
          dir_, n > 0 ? std::string(buf, n) : std::string("unknown")));
    }
    return ErrnoStatus(err, absl::StrFormat("cannot lock '%s'", lock_path));
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(lock_fd_, 0) != 0 ||
      ::pwrite(lock_fd_, pid.data(), pid.size(), 0) !=
          static_cast<ssize_t>(pid.size())) {
    return ErrnoStatus(errno, absl::StrFormat("cannot write '%s'", lock_path));
  }

  // LMDB trusts the meta pages' page size (storage/page_check.h).
  TXMQ_RETURN_IF_ERROR(CheckMetaPages(dir_));
  if (int rc = mdb_env_create(&env_); rc != MDB_SUCCESS) {
    env_ = nullptr;
    return LmdbStatus(rc, "cannot create an LMDB environment");
  }
  mdb_env_set_maxdbs(env_, config_.max_queue_tables + config_.max_host_tables +
                               kInternalTables);
  mdb_env_set_maxreaders(env_, config_.max_readers);
  mdb_env_set_mapsize(env_, RoundUp(config_.initial_map_bytes, kMiB));
  // MDB_NOTLS: read transactions are tied to batches, not threads.
  // MDB_NORDAHEAD: consumers touch recent pages; read-ahead only evicts.
  unsigned flags = MDB_NOTLS | MDB_NORDAHEAD;
  if (!config_.sync_commits) flags |= MDB_NOSYNC;
  if (int rc = mdb_env_open(env_, dir_.c_str(), flags, 0644);
      rc != MDB_SUCCESS) {
    mdb_env_close(env_);
    env_ = nullptr;
    if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH) {
      return absl::DataLossError(absl::StrFormat(
          "'%s/data.mdb' is not a txmq data file (%s); it is foreign or "
          "damaged: move it away, or restore the directory from a backup",
          dir_, mdb_strerror(rc)));
    }
    return LmdbStatus(rc,
                      absl::StrFormat("cannot open data directory '%s'", dir_));
  }
  // Before LMDB reads a page: a truncated or damaged file is DATA_LOSS,
  // not SIGBUS or SIGSEGV.
  if (absl::Status s = CheckPagesOnOpen(env_, dir_); !s.ok()) {
    mdb_env_close(env_);
    env_ = nullptr;
    return s;
  }
  ClearStaleReaders();  // slots of crashed reader processes

  bool fresh = false;
  if (absl::Status s = CheckFormat(&fresh); !s.ok()) {
    if (!existed) {
      // We created data.mdb ourselves; leave no empty file behind.
      std::error_code ec;
      std::filesystem::remove(dir_ + "/data.mdb", ec);
      std::filesystem::remove(dir_ + "/lock.mdb", ec);
    }
    return s;
  }

  MDB_stat stat;
  mdb_env_stat(env_, &stat);
  page_bytes_ = stat.ms_psize;
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  map_bytes_.store(info.me_mapsize, std::memory_order_relaxed);
  RefreshUsage();
  if (struct stat data; ::stat((dir_ + "/data.mdb").c_str(), &data) == 0) {
    file_bytes_ = static_cast<size_t>(data.st_size);
  }
  // An existing file may already fill the configured map; grow now, while
  // nothing holds the map.
  while (NeedsGrowth()) {
    absl::StatusOr<size_t> next = NextMapSize();
    if (!next.ok()) break;
    TXMQ_RETURN_IF_ERROR(Grow());
  }
  return absl::OkStatus();
}

absl::Status Env::CheckFormat(bool* fresh) {
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(env_, nullptr, 0, &txn); rc != MDB_SUCCESS) {
    return LmdbStatus(rc, absl::StrFormat("cannot write '%s'", dir_));
  }
  auto fail = [&](absl::Status s) {
    mdb_txn_abort(txn);
    return s;
  };
  int rc = mdb_dbi_open(txn, "meta", 0, &meta_);
  if (rc == MDB_NOTFOUND) {
    MDB_dbi main;
    MDB_stat main_stat;
    rc = mdb_dbi_open(txn, nullptr, 0, &main);
    if (rc == MDB_SUCCESS) rc = mdb_stat(txn, main, &main_stat);
    if (rc != MDB_SUCCESS) {
      return fail(LmdbStatus(rc, absl::StrFormat("cannot read '%s'", dir_)));
    }
    if (main_stat.ms_entries != 0) {
      return fail(absl::FailedPreconditionError(absl::StrFormat(
          "'%s' holds an LMDB environment that is not a txmq data directory; "
          "use an empty directory",
          dir_)));
    }
    *fresh = true;
    std::string version;
    AppendBigEndian(kFormatVersion, 4, &version);
    MDB_val magic_key = Val("magic"), magic = Val(kMagic);
    MDB_val version_key = Val("format_version"), version_val = Val(version);
    rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &meta_);
    if (rc == MDB_SUCCESS) rc = mdb_put(txn, meta_, &magic_key, &magic, 0);
    if (rc == MDB_SUCCESS) {
      rc = mdb_put(txn, meta_, &version_key, &version_val, 0);
    }
    if (rc != MDB_SUCCESS) {
      return fail(LmdbStatus(
          rc, absl::StrFormat("cannot initialise data directory '%s'", dir_)));
    }
  } else if (rc != MDB_SUCCESS) {
    return fail(LmdbStatus(rc, absl::StrFormat("cannot read '%s'", dir_)));
  } else {
    MDB_val key = Val("magic"), val;
    rc = mdb_get(txn, meta_, &key, &val);
    if (rc == MDB_NOTFOUND ||
        (rc == MDB_SUCCESS && std::string_view(static_cast<char*>(val.mv_data),
                                               val.mv_size) != kMagic)) {
      return fail(absl::FailedPreconditionError(absl::StrFormat(
          "'%s' holds an LMDB environment that is not a txmq data directory "
          "(no txmq magic); use an empty directory",
          dir_)));
    }
    key = Val("format_version");
    if (rc == MDB_SUCCESS) rc = mdb_get(txn, meta_, &key, &val);
    if (rc != MDB_SUCCESS || val.mv_size != 4) {
      return fail(absl::DataLossError(absl::StrFormat(
          "'%s' has no readable format version (%s); the directory is "
          "damaged: restore it from a backup",
          dir_, rc == MDB_SUCCESS ? "wrong size" : mdb_strerror(rc))));
    }
    const uint64_t version =
        GetBigEndian(static_cast<const char*>(val.mv_data), 4);
    if (version > kFormatVersion) {
      return fail(absl::FailedPreconditionError(absl::StrFormat(
          "'%s' was written by a newer txmq (format version %d; this build "
          "reads up to %d); upgrade txmq to open it",
          dir_, version, kFormatVersion)));
    }
    if (version == 0) {
      return fail(absl::DataLossError(absl::StrFormat(
          "'%s' has format version 0, which no txmq writes; the directory is "
          "damaged",
          dir_)));
    }
  }
  rc = mdb_dbi_open(txn, "cursor", MDB_CREATE, &cursor_);
  if (rc == MDB_SUCCESS) rc = mdb_dbi_open(txn, "half", MDB_CREATE, &half_);
  if (rc == MDB_SUCCESS) {
    rc = mdb_dbi_open(txn, "txn_outcome", MDB_CREATE, &outcome_);
  }
  if (rc == MDB_SUCCESS) rc = mdb_dbi_open(txn, "timer", MDB_CREATE, &timer_);
  if (rc == MDB_SUCCESS) rc = mdb_dbi_open(txn, "delay", MDB_CREATE, &delay_);
  if (rc == MDB_SUCCESS) {
    // A directory from before the key index gets it empty; the broker
    // fills it (key_index_created()).
    // The meta row "key_index_pending" marks it unfinished until then, so
    // that a crash while it is filled has it filled again.
    MDB_val pending = Val(kKeyIndexPendingKey), none = Val("");
    rc = mdb_dbi_open(txn, "key_index", 0, &key_index_);
    if (rc == MDB_NOTFOUND) {
      rc = mdb_dbi_open(txn, "key_index", MDB_CREATE, &key_index_);
      if (rc == MDB_SUCCESS && !*fresh) {
        rc = mdb_put(txn, meta_, &pending, &none, 0);
      }
    }
    if (rc == MDB_SUCCESS) {
      MDB_val v;
      rc = mdb_get(txn, meta_, &pending, &v);
      key_index_created_ = rc == MDB_SUCCESS;
      if (rc == MDB_NOTFOUND) rc = MDB_SUCCESS;
    }
  }
  if (rc != MDB_SUCCESS) {
    return fail(LmdbStatus(rc, absl::StrFormat("cannot open '%s'", dir_)));
  }
  // A fresh directory must be durable before anyone writes to it.
  rc = mdb_txn_commit(txn);
  if (rc == MDB_SUCCESS && *fresh && !config_.sync_commits) {
    rc = mdb_env_sync(env_, 1);
  }
  return LmdbStatus(rc, absl::StrFormat("cannot write '%s'", dir_));
}

void Env::ClearStaleReaders() {
  int dead = 0;
  if (mdb_reader_check(env_, &dead) == MDB_SUCCESS && dead > 0) {
    stale_readers_cleared_.fetch_add(static_cast<uint64_t>(dead),
                                     std::memory_order_relaxed);
  }
}

absl::Status Env::FinishKeyIndex() {
  if (!key_index_created_) return absl::OkStatus();
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc == MDB_SUCCESS) {
    MDB_val pending = Val(kKeyIndexPendingKey);
    rc = mdb_del(txn, meta_, &pending, nullptr);
    if (rc == MDB_SUCCESS || rc == MDB_NOTFOUND) {
      rc = mdb_txn_commit(txn);
    } else {
      mdb_txn_abort(txn);
    }
  }
  if (rc == MDB_SUCCESS && !config_.sync_commits) rc = mdb_env_sync(env_, 1);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "cannot finish the key index");
  key_index_created_ = false;
  return absl::OkStatus();
}

Env::~Env() {
  if (env_ != nullptr) {
    if (!config_.sync_commits) mdb_env_sync(env_, 1);
    mdb_env_close(env_);
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
  if (registered_) {
    OpenDirs& reg = Registry();
    absl::MutexLock lock(&reg.mu);
    reg.keys.erase({dir_key_[0], dir_key_[1]});
  }
}

void Env::RefreshUsage() {
  MDB_envinfo info;
  mdb_env_info(env_, &info);  // reads the meta page: in the map
  used_bytes_.store((info.me_last_pgno + 1) * page_bytes_,
                    std::memory_order_relaxed);
}

bool Env::NeedsGrowth() const { return used_bytes() > map_bytes() / 4 * 3; }

absl::StatusOr<size_t> Env::NextMapSize() const {
  const size_t current = map_bytes();
  size_t next = current + std::min(current, kMaxGrowthStep);
  next = std::max(next, RoundUp(used_bytes() / 3 * 4 + kMiB, kMiB));
  if (config_.max_map_bytes != 0) {
    if (current >= config_.max_map_bytes) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "the data file of '%s' reached its limit (max_map_bytes = %d); "
          "delete topics or reopen with a larger max_map_bytes",
          dir_, config_.max_map_bytes));
    }
    next = std::min(next, RoundUp(config_.max_map_bytes, kMiB));
  }
  return next;
}

absl::Status Env::Grow() {
  TXMQ_ASSIGN_OR_RETURN(const size_t next, NextMapSize());
  if (int rc = mdb_env_set_mapsize(env_, next); rc != MDB_SUCCESS) {
    return LmdbStatus(rc, absl::StrFormat("cannot grow the map of '%s' to %d "
                                          "bytes",
                                          dir_, next));
  }
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  map_bytes_.store(info.me_mapsize, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status Env::PrefillAhead() {
  const size_t used = used_bytes();
  if (file_bytes_ >= used + kPrefillLow) return absl::OkStatus();
  const size_t target =
      std::min(map_bytes(), RoundUp(used + kPrefillAhead, kMiB));
  if (target <= file_bytes_) return absl::OkStatus();
  int fd = -1;
  if (int rc = mdb_env_get_fd(env_, &fd); rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot prefill the data file");
  }
  // Only past LMDB's last page: no page there is in use, and no transaction
  // is open (writer thread, between batches).
  static const std::string zeros(kMiB, '\0');
  size_t at = std::max(file_bytes_, used);
  while (at < target) {
    const size_t n = std::min(zeros.size(), target - at);
    const ssize_t written =
        ::pwrite(fd, zeros.data(), n, static_cast<off_t>(at));
    if (written <= 0) {
      return ErrnoStatus(errno,
                         absl::StrFormat("cannot prefill '%s/data.mdb'", dir_));
    }
    at += static_cast<size_t>(written);
  }
  if (::fdatasync(fd) != 0) {
    return ErrnoStatus(errno,
                       absl::StrFormat("cannot sync '%s/data.mdb'", dir_));
  }
  file_bytes_ = at;
  return absl::OkStatus();
}

absl::Status Env::WriteError(int rc, std::string_view what) const {
  if (rc != EIO && rc != ENOSPC && rc != EFBIG && rc != EDQUOT) {
    return LmdbStatus(rc, what);
  }
  // What one commit may still need: below this, a failed write is taken
  // for a full disk.
  constexpr uint64_t kSlack = uint64_t{16} << 20;
  mdb_filehandle_t fd;
  struct stat st;
  if (mdb_env_get_fd(env_, &fd) != MDB_SUCCESS || fstat(fd, &st) != 0) {
    return LmdbStatus(rc, what);
  }
  struct rlimit limit;
  if (getrlimit(RLIMIT_FSIZE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY &&
      static_cast<uint64_t>(st.st_size) + kSlack >= limit.rlim_cur) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: the data file (%d bytes) reached this process's file-size "
        "limit (RLIMIT_FSIZE, %d bytes)",
        what, st.st_size, limit.rlim_cur));
  }
  struct statvfs fs;
  if (fstatvfs(fd, &fs) == 0) {
    // Root may use the blocks reserved for it.
    const uint64_t free_bytes =
        static_cast<uint64_t>(geteuid() == 0 ? fs.f_bfree : fs.f_bavail) *
        fs.f_frsize;
    if (free_bytes < kSlack) {
      return absl::ResourceExhaustedError(
          absl::StrFormat("%s: the disk holding '%s' is full (%d bytes free)",
                          what, dir_, free_bytes));
    }
  }
  return LmdbStatus(rc, what);
}

absl::Status Env::Sync() {
  return LmdbStatus(mdb_env_sync(env_, 1),
                    absl::StrFormat("cannot sync '%s'", dir_));
}

}  // namespace txmq
