#include "storage/page_check.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "storage/lmdb_status.h"
#include "util/status_macros.h"

namespace txmq {
namespace {

static_assert(std::endian::native == std::endian::little &&
                  sizeof(void*) == 8 && sizeof(size_t) == 8,
              "the page layout below is LMDB 0.9's on a 64-bit little-endian "
              "host");

// LMDB 0.9's on-disk layout (mdb.c). A page: pgno (8), pad (2), flags (2),
// lower/upper (2 + 2) or, for an overflow page, its page count (4); then
// the node offsets (2 each) from the bottom up, the nodes from the top
// down.
constexpr size_t kPageHeader = 16;
constexpr uint16_t kBranch = 0x01, kLeaf = 0x02, kOverflow = 0x04, kMeta = 0x08,
                   kLeaf2 = 0x20, kSubPage = 0x40;
// A node: lo (2), hi (2), flags (2), key size (2), key, value. In a branch
// node lo|hi<<16|flags<<32 is the child's page; in a leaf lo|hi<<16 is the
// value's size, and a large value is the number of its first overflow page.
constexpr size_t kNodeHeader = 8;
constexpr uint16_t kBigData = 0x01, kSubData = 0x02, kDupData = 0x04;
// MDB_db, a tree's record: pad (4), flags (2), depth (2), branch pages,
// leaf pages, overflow pages, entries, root (8 each).
constexpr size_t kDbRecord = 48;
constexpr uint64_t kNoRoot = ~uint64_t{0};
// The flags of a tree's record that change how LMDB reads its pages
// (MDB_REVERSEKEY, DUPSORT, INTEGERKEY, DUPFIXED, INTEGERDUP, REVERSEDUP);
// other bits may be set by whoever created the file (environment flags).
constexpr uint16_t kKeyFlags = 0x7e;
constexpr uint16_t kIntegerKey = 0x08;  // MDB_INTEGERKEY
// Pages a commit may count in the meta page's last page without writing
// them (LMDB's loose pages, freed again in the transaction that took them:
// at most a transaction's dirty list, MDB_IDL_UM_MAX).
constexpr uint64_t kMaxUnwrittenPages = uint64_t{1} << 17;
// MDB_meta, after the page header of pages 0 and 1: magic (4), version
// (4), address (8), map size (8), the free list's and the main table's
// MDB_db, last page (8), transaction id (8).
constexpr uint32_t kMagic = 0xBEEFC0DE;
constexpr size_t kMetaDbs = 24, kMetaLastPage = 120, kMetaTxnId = 128;
// Deeper than any tree a file of 2^64 bytes can hold.
constexpr unsigned kMaxDepth = 32;

// LMDB takes the page size from a meta page without a check.
bool ValidPageSize(size_t size) {
  return size >= 512 && size <= 65536 && std::has_single_bit(size);
}

// A snapshot may count pages past the end of the file that it never wrote
// (and lists as free); more than kMaxUnwrittenPages is a truncated file.
bool TooManyPages(uint64_t page_count, uint64_t file_pages) {
  return page_count > file_pages + kMaxUnwrittenPages;
}

std::string TooManyPagesText(uint64_t page_count, uint64_t file_pages) {
  return absl::StrFormat(
      "the meta page counts %d pages, but the file has %d: it is truncated "
      "or damaged",
      page_count, file_pages);
}

absl::Status Damaged(std::string_view dir, std::string_view what) {
  return absl::DataLossError(absl::StrFormat(
      "'%s/data.mdb' is damaged: %s; restore the directory from a backup",
      std::string(dir), what));
}

template <typename T>
T Load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

struct Db {
  uint16_t flags = 0;
  uint16_t depth = 0;
  uint64_t branch_pages = 0, leaf_pages = 0, overflow_pages = 0;
  uint64_t entries = 0;
  uint64_t root = kNoRoot;
};

Db LoadDb(const char* p) {
  Db db;
  db.flags = Load<uint16_t>(p + 4);
  db.depth = Load<uint16_t>(p + 6);
  db.branch_pages = Load<uint64_t>(p + 8);
  db.leaf_pages = Load<uint64_t>(p + 16);
  db.overflow_pages = Load<uint64_t>(p + 24);
  db.entries = Load<uint64_t>(p + 32);
  db.root = Load<uint64_t>(p + 40);
  return db;
}

struct Counts {
  uint64_t branch = 0, leaf = 0, overflow = 0, entries = 0;
};

enum class Kind { kFree, kMain, kNamed };

class Walker {
 public:
  // `page_count`: the snapshot's pages (at most kMaxUnwrittenPages more
  // than the file's).
  Walker(const char* file, uint64_t file_pages, size_t page_size,
         uint64_t page_count, size_t max_problems,
         const std::function<bool(uint64_t, uint64_t)>& progress)
      : file_(file),
        file_pages_(file_pages),
        page_size_(page_size),
        page_count_(page_count),
        max_problems_(max_problems),
        progress_(progress),
        seen_(page_count, false),
        free_seen_(page_count, false) {
    // Pages 0 and 1 are the meta pages.
    for (uint64_t p = 0; p < 2 && p < page_count; ++p) seen_[p] = true;
  }

  // Walks one tree; its named tables (kMain) are collected for later.
  absl::Status Walk(std::string name, const Db& db, Kind kind) {
    ++result_.tables;
    const size_t before = result_.problems.size();
    // The free list has integer keys; txmq's tables are plain ones. Other
    // flags would make LMDB read the pages as another kind of tree.
    const uint16_t flags = kind == Kind::kFree ? kIntegerKey : 0;
    if ((db.flags & kKeyFlags) != flags) {
      Problem(name, absl::StrFormat("its record has flags 0x%x, not 0x%x",
                                    db.flags & kKeyFlags, flags));
      return absl::OkStatus();
    }
    if (db.root == kNoRoot) {
      if (db.depth != 0 || db.entries != 0 || db.leaf_pages != 0) {
        Problem(name, absl::StrFormat(
                          "its record has no root page but %d entries, depth "
                          "%d",
                          db.entries, db.depth));
      }
      return absl::OkStatus();
    }
    if (db.depth == 0 || db.depth > kMaxDepth) {
      Problem(name, absl::StrFormat("its record gives depth %d", db.depth));
      return absl::OkStatus();
    }
    Counts counts;
    tree_ = &name;
    kind_ = kind;
    depth_ = db.depth;
    parent_ = kNoRoot;
    TXMQ_RETURN_IF_ERROR(Visit(db.root, 1, counts));
    if (result_.problems.size() != before) return absl::OkStatus();
    auto differs = [&](const char* what, uint64_t record, uint64_t tree) {
      if (record != tree) {
        Problem(name,
                absl::StrFormat("its record counts %d %s, the tree has %d",
                                record, what, tree));
      }
    };
    differs("branch pages", db.branch_pages, counts.branch);
    differs("leaf pages", db.leaf_pages, counts.leaf);
    differs("overflow pages", db.overflow_pages, counts.overflow);
    differs("entries", db.entries, counts.entries);
    return absl::OkStatus();
  }

  // After every tree: no page is both in a tree and free, or free twice
  // (a writer would hand it out twice).
  void CheckFreePages() {
    for (uint64_t p : free_) {
      if (p < 2 || p >= page_count_) {
        Problem(
            "(free list)",
            absl::StrFormat("lists page %d, outside the snapshot's %d pages", p,
                            page_count_));
      } else if (seen_[p]) {
        Problem("(free list)",
                absl::StrFormat("lists page %d, which a tree uses", p));
      } else if (free_seen_[p]) {
        Problem("(free list)", absl::StrFormat("lists page %d twice", p));
      } else {
        free_seen_[p] = true;
      }
    }
  }

  std::vector<std::pair<std::string, Db>> TakeTables() {
    return std::exchange(tables_, {});
  }
  PageCheck& result() { return result_; }

 private:
  // The `count` pages from `first`, or null (with a problem) when the file
  // ends first.
  absl::StatusOr<const char*> Read(uint64_t first, uint64_t count) {
    if (first > file_pages_ || count > file_pages_ - first) {
      Problem(*tree_,
              absl::StrFormat("page %d is past the end of the file (%d pages): "
                              "the file is truncated",
                              std::max(first, file_pages_), file_pages_));
      return nullptr;
    }
    result_.pages += count;
    if (progress_ && (result_.pages & 0xfff) < count &&
        !progress_(result_.pages, page_count_)) {
      return absl::CancelledError("the page check was stopped");
    }
    return file_ + first * page_size_;
  }

  // Marks `count` pages from `first` as reached; false (with a problem)
  // when one is outside the file or was reached before.
  bool Claim(uint64_t first, uint64_t count, uint64_t from) {
    auto source = [from] {
      return from == kNoRoot ? std::string("its record")
                             : absl::StrFormat("page %d", from);
    };
    if (first < 2 || first >= page_count_ || count > page_count_ - first) {
      Problem(*tree_, absl::StrFormat("%s points to page %d, outside the "
                                      "snapshot's data pages [2, %d)",
                                      source(), first, page_count_));
      return false;
    }
    for (uint64_t p = first; p < first + count; ++p) {
      if (seen_[p]) {
        Problem(*tree_,
                absl::StrFormat("%s points to page %d, which is reached twice",
                                source(), p));
        return false;
      }
      seen_[p] = true;
    }
    return true;
  }

  absl::Status Visit(uint64_t pgno, unsigned depth, Counts& counts) {
    if (!Claim(pgno, 1, parent_)) return absl::OkStatus();
    TXMQ_ASSIGN_OR_RETURN(const char* const p, Read(pgno, 1));
    if (p == nullptr) return absl::OkStatus();
    auto bad = [&](std::string what) {
      Problem(*tree_, absl::StrFormat("page %d: %s", pgno, what));
      return absl::OkStatus();
    };
    if (Load<uint64_t>(p) != pgno) {
      return bad(absl::StrFormat("its header names page %d (garbage?)",
                                 Load<uint64_t>(p)));
    }
    const uint16_t flags = Load<uint16_t>(p + 10);
    const uint16_t want = depth == depth_ ? kLeaf : kBranch;
    if ((flags & (kBranch | kLeaf | kOverflow | kMeta | kLeaf2 | kSubPage)) !=
        want) {
      return bad(absl::StrFormat(
          "flags 0x%x, but at depth %d of %d it must be a %s page", flags,
          depth, depth_, want == kLeaf ? "leaf" : "branch"));
    }
    const uint16_t lower = Load<uint16_t>(p + 12);
    const uint16_t upper = Load<uint16_t>(p + 14);
    if (lower < kPageHeader || lower > upper || upper > page_size_ ||
        (lower - kPageHeader) % 2 != 0) {
      return bad(
          absl::StrFormat("bad bounds lower %d, upper %d", lower, upper));
    }
    const size_t keys = (lower - kPageHeader) / 2;
    if (keys == 0) return bad("no entries");
    // LMDB asserts that a branch page of a table has two children.
    if (want == kBranch && keys < 2 && kind_ != Kind::kFree) {
      return bad("a branch page with one entry");
    }
    if (want == kBranch) {
      ++counts.branch;
    } else {
      ++counts.leaf;
      counts.entries += keys;
    }
    for (size_t i = 0; i < keys; ++i) {
      const size_t at = Load<uint16_t>(p + kPageHeader + 2 * i);
      if (at < upper || at + kNodeHeader > page_size_) {
        return bad(absl::StrFormat("entry %d at offset %d, outside [%d, %d)", i,
                                   at, upper, page_size_));
      }
      const char* const node = p + at;
      const uint16_t lo = Load<uint16_t>(node);
      const uint16_t hi = Load<uint16_t>(node + 2);
      const uint16_t node_flags = Load<uint16_t>(node + 4);
      const size_t key_size = Load<uint16_t>(node + 6);
      const size_t key_end = at + kNodeHeader + key_size;
      if (key_end > page_size_) {
        return bad(
            absl::StrFormat("entry %d's key of %d bytes runs past the "
                            "page",
                            i, key_size));
      }
      // The free list's keys are transaction ids, which LMDB reads as 8
      // bytes whatever the size says (the first key of a branch page is
      // empty).
      if (kind_ == Kind::kFree && key_size != 8 &&
          !(want == kBranch && i == 0)) {
        return bad(
            absl::StrFormat("entry %d's key of %d bytes is not a "
                            "transaction id",
                            i, key_size));
      }
      if (want == kBranch) {
        const uint64_t child =
            lo | (uint64_t{hi} << 16) | (uint64_t{node_flags} << 32);
        parent_ = pgno;
        TXMQ_RETURN_IF_ERROR(Visit(child, depth + 1, counts));
        continue;
      }
      const uint64_t size = lo | (uint64_t{hi} << 16);
      const std::string_view key(node + kNodeHeader, key_size);
      if ((node_flags & ~(kBigData | kSubData | kDupData)) != 0 ||
          (node_flags & kDupData) != 0 ||
          ((node_flags & kSubData) != 0 && kind_ != Kind::kMain) ||
          ((node_flags & kSubData) != 0 && (node_flags & kBigData) != 0)) {
        return bad(
            absl::StrFormat("entry %d has flags 0x%x, which no txmq table uses",
                            i, node_flags));
      }
      if ((node_flags & kBigData) != 0) {
        if (key_end + 8 > page_size_) {
          return bad(absl::StrFormat("entry %d runs past the page", i));
        }
        TXMQ_RETURN_IF_ERROR(Overflow(
            pgno, i, Load<uint64_t>(node + key_end - at), size, counts));
        continue;
      }
      if (key_end + size > page_size_) {
        return bad(absl::StrFormat(
            "entry %d's value of %d bytes runs past the page", i, size));
      }
      const std::string_view value(node + kNodeHeader + key_size, size);
      if ((node_flags & kSubData) != 0) {
        if (size != kDbRecord) {
          return bad(absl::StrFormat(
              "table record '%s' is %d bytes, not %d",
              absl::CHexEscape(absl::string_view(key.data(), key.size())), size,
              kDbRecord));
        }
        // LMDB opens tables by C string.
        if (key.empty() || key.find('\0') != std::string_view::npos) {
          return bad(absl::StrFormat(
              "table record '%s' has an empty name or one with a NUL byte",
              absl::CHexEscape(absl::string_view(key.data(), key.size()))));
        }
        tables_.emplace_back(std::string(key), LoadDb(value.data()));
      } else if (kind_ == Kind::kFree) {
        FreeList(pgno, value);
      }
    }
    return absl::OkStatus();
  }

  // A large value of `size` bytes in the overflow run starting at `first`.
  absl::Status Overflow(uint64_t from, size_t entry, uint64_t first,
                        uint64_t size, Counts& counts) {
    const uint64_t needed = (size + kPageHeader + page_size_ - 1) / page_size_;
    if (!Claim(first, 1, from)) return absl::OkStatus();
    TXMQ_ASSIGN_OR_RETURN(const char* const head, Read(first, 1));
    if (head == nullptr) return absl::OkStatus();
    const uint32_t pages = Load<uint32_t>(head + 12);
    if (Load<uint64_t>(head) != first ||
        (Load<uint16_t>(head + 10) & kOverflow) == 0 || pages < needed) {
      Problem(*tree_,
              absl::StrFormat("page %d: entry %d's value of %d bytes points to "
                              "page %d, which is not an overflow run of at "
                              "least %d pages",
                              from, entry, size, first, needed));
      return absl::OkStatus();
    }
    if (pages > 1 && !Claim(first + 1, pages - 1, from)) {
      return absl::OkStatus();
    }
    counts.overflow += pages;
    if (kind_ == Kind::kFree) {
      TXMQ_ASSIGN_OR_RETURN(const char* const run, Read(first + 1, pages - 1));
      if (run != nullptr) {
        FreeList(from, std::string_view(head + kPageHeader, size));
      }
    } else {
      result_.pages += pages - 1;  // not read: values are checked above
    }
    return absl::OkStatus();
  }

  // A free-list record: a count n, then n page numbers.
  void FreeList(uint64_t from, std::string_view value) {
    if (value.size() < 8 || value.size() % 8 != 0 ||
        Load<uint64_t>(value.data()) > value.size() / 8 - 1) {
      Problem("(free list)",
              absl::StrFormat("page %d: a record of %d bytes is not a page "
                              "list",
                              from, value.size()));
      return;
    }
    const uint64_t n = Load<uint64_t>(value.data());
    for (uint64_t i = 1; i <= n; ++i) {
      free_.push_back(Load<uint64_t>(value.data() + 8 * i));
    }
  }

  void Problem(std::string_view tree, std::string what) {
    if (result_.problems.size() < max_problems_) {
      result_.problems.push_back(absl::StrFormat("table %s: %s", tree, what));
    } else if (result_.problems.size() == max_problems_) {
      result_.problems.push_back("(more problems not listed)");
    }
  }

  const char* const file_;
  const uint64_t file_pages_;
  const size_t page_size_;
  const uint64_t page_count_;
  const size_t max_problems_;
  const std::function<bool(uint64_t, uint64_t)>& progress_;
  std::vector<bool> seen_;       // reached by a tree
  std::vector<bool> free_seen_;  // listed free
  std::vector<uint64_t> free_;
  std::vector<std::pair<std::string, Db>> tables_;
  const std::string* tree_ = nullptr;
  Kind kind_ = Kind::kMain;
  unsigned depth_ = 0;
  uint64_t parent_ = 0;
  PageCheck result_;
};

}  // namespace

absl::StatusOr<PageCheck> CheckPages(
    MDB_env* env, MDB_txn* txn, size_t max_problems,
    const std::function<bool(uint64_t, uint64_t)>& progress) {
  MDB_stat stat;
  mdb_filehandle_t fd;
  if (int rc = mdb_env_stat(env, &stat); rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot read the data file's meta page");
  }
  if (int rc = mdb_env_get_fd(env, &fd); rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot read the data file");
  }
  const size_t page_size = stat.ms_psize;
  if (!ValidPageSize(page_size)) {
    return absl::DataLossError(absl::StrFormat(
        "the meta page gives a page size of %d bytes", page_size));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    return LmdbStatus(errno, "cannot read the data file");
  }
  // Our own read-only map of the file as it is now (LMDB's may be larger
  // than the file, and is LMDB's). Nothing past its end is touched, so a
  // short file is a problem, not a SIGBUS.
  const uint64_t file_pages = static_cast<uint64_t>(st.st_size) / page_size;
  if (file_pages < 2) {
    return absl::DataLossError("the data file is shorter than its meta pages");
  }
  const size_t length = file_pages * page_size;
  void* const map = ::mmap(nullptr, length, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return LmdbStatus(errno, "cannot map the data file");
  absl::Cleanup unmap = [&] { ::munmap(map, length); };
  const char* const file = static_cast<const char*>(map);

  // The meta page of this snapshot: LMDB's read transaction N takes its
  // trees from page N % 2 (whatever transaction id that page holds). It is
  // copied (the next commit but one rewrites it), and the copy must give
  // the trees the transaction itself has.
  const uint64_t id = mdb_txn_id(txn);
  const char* const m = file + (id & 1) * page_size + kPageHeader;
  char meta[kMetaTxnId + 8];
  std::memcpy(meta, m, sizeof meta);
  if (Load<uint32_t>(meta) != kMagic) {
    PageCheck damaged;
    damaged.problems.push_back(
        absl::StrFormat("meta page %d has no LMDB magic number", id & 1));
    return damaged;
  }
  const Db free_db = LoadDb(meta + kMetaDbs);
  const Db main_db = LoadDb(meta + kMetaDbs + kDbRecord);
  auto same = [txn](MDB_dbi dbi, const Db& db) {
    MDB_stat st;
    return mdb_stat(txn, dbi, &st) == MDB_SUCCESS && st.ms_depth == db.depth &&
           st.ms_entries == db.entries && st.ms_leaf_pages == db.leaf_pages &&
           st.ms_branch_pages == db.branch_pages &&
           st.ms_overflow_pages == db.overflow_pages;
  };
  if (!same(/*FREE_DBI*/ 0, free_db) || !same(/*MAIN_DBI*/ 1, main_db)) {
    // Two commits since the snapshot began: its meta page was reused.
    return absl::AbortedError(absl::StrFormat(
        "meta page %d no longer describes transaction %d; begin again", id & 1,
        id));
  }
  // A tree page past the end of the file is a truncated file (Read).
  const uint64_t page_count = Load<uint64_t>(meta + kMetaLastPage) + 1;
  if (TooManyPages(page_count, file_pages)) {
    PageCheck truncated;
    truncated.page_count = page_count;
    truncated.problems.push_back(TooManyPagesText(page_count, file_pages));
    return truncated;
  }
  Walker walker(file, file_pages, page_size, page_count, max_problems,
                progress);
  walker.result().page_count = page_count;
  TXMQ_RETURN_IF_ERROR(walker.Walk("(free list)", free_db, Kind::kFree));
  TXMQ_RETURN_IF_ERROR(walker.Walk("(main)", main_db, Kind::kMain));
  for (auto& [name, db] : walker.TakeTables()) {
    TXMQ_RETURN_IF_ERROR(walker.Walk(
        "'" + absl::CHexEscape(absl::string_view(name.data(), name.size())) +
            "'",
        db, Kind::kNamed));
  }
  walker.CheckFreePages();
  return std::move(walker.result());
}

absl::Status CheckMetaPages(std::string_view dir) {
  const std::string path = std::string(dir) + "/data.mdb";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::OkStatus();  // LMDB says what is wrong
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size == 0) return absl::OkStatus();
  auto damaged = [&](std::string_view what) { return Damaged(dir, what); };
  // As LMDB reads them (mdb_env_read_header): page 0, then the page at the
  // page size page 0 gives; the one with the higher transaction id wins.
  size_t page_size = 0;
  uint64_t txn_id = 0, last_page = 0;
  uint64_t offset = 0;
  for (int i = 0; i < 2; ++i) {
    char page[kPageHeader + kMetaTxnId + 8];
    if (::pread(fd, page, sizeof page, static_cast<off_t>(offset)) !=
        static_cast<ssize_t>(sizeof page)) {
      return absl::OkStatus();  // short: LMDB says what is wrong
    }
    const char* const meta = page + kPageHeader;
    if ((Load<uint16_t>(page + 10) & kMeta) == 0 ||
        Load<uint32_t>(meta) != kMagic || Load<uint32_t>(meta + 4) != 1) {
      return absl::OkStatus();  // not LMDB's: LMDB says so
    }
    const size_t size = Load<uint32_t>(meta + kMetaDbs);  // the free list's pad
    if (!ValidPageSize(size)) {
      return damaged(
          absl::StrFormat("meta page %d gives a page size of %d "
                          "bytes",
                          i, size));
    }
    if (i == 1 && size != page_size) {
      return damaged(
          absl::StrFormat("the meta pages give page sizes of %d and %d bytes",
                          page_size, size));
    }
    if (i == 0 || Load<uint64_t>(meta + kMetaTxnId) > txn_id) {
      txn_id = Load<uint64_t>(meta + kMetaTxnId);
      last_page = Load<uint64_t>(meta + kMetaLastPage);
    }
    page_size = size;
    offset += size;
  }
  // LMDB maps at least the pages the meta page counts.
  const uint64_t file_pages = static_cast<uint64_t>(st.st_size) / page_size;
  if (TooManyPages(last_page + 1, file_pages)) {
    return damaged(TooManyPagesText(last_page + 1, file_pages));
  }
  return absl::OkStatus();
}

absl::Status CheckPagesOnOpen(MDB_env* env, std::string_view dir) {
  for (int attempt = 0;; ++attempt) {
    MDB_txn* txn = nullptr;
    if (int rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
        rc != MDB_SUCCESS) {
      return LmdbStatus(rc, "cannot read the data file");
    }
    constexpr size_t kShown = 3;
    absl::StatusOr<PageCheck> check = CheckPages(env, txn, kShown);
    mdb_txn_abort(txn);
    if (absl::IsAborted(check.status())) {
      if (attempt < 10) continue;
      // No owner commits that often: the meta page disagrees with itself.
      return Damaged(dir, std::string(check.status().message()));
    }
    if (!check.ok()) return check.status();
    if (check->ok()) return absl::OkStatus();
    return Damaged(dir, absl::StrJoin(check->problems, "; "));
  }
}

}  // namespace txmq
