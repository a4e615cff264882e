// A structural check of every page of an LMDB snapshot, made before LMDB
// is let loose on a data file it did not just write.
//
// LMDB keeps no checksums and trusts its pages: a page overwritten with
// garbage (a damaged disk, a stray write, a bad copy) makes it follow node
// offsets, key sizes and data sizes out of the page, and the process dies
// of SIGSEGV or SIGBUS, or reads another page's bytes as a message. This
// check walks the B-trees of one snapshot itself, through its own
// read-only map of the file as long as it is (so a page past the end of a
// truncated file is a problem, not a SIGBUS), and checks on each page what
// LMDB would trust:
//   - the page is inside the file and names itself (LMDB stores each
//     page's number in its header), with the kind its place in the tree
//     needs (branch above the tree's depth, leaf at it, overflow where a
//     large value points); a table's branch pages have two entries or more
//     (LMDB asserts it);
//   - its header bounds and every node offset, key and value lie inside
//     the page (a large value's overflow pages inside the file); the free
//     list's keys are 8 bytes;
//   - no page is reached twice, is both in a tree and on the free list, or
//     is on the free list twice;
//   - each tree's flags, depth, page and entry counts agree with its
//     record; the page size is a power of two in [512, 65536].
// It knows the layout of LMDB 0.9 on a 64-bit little-endian host (the only
// one txmq builds for), and the node kinds txmq's tables use: a named
// table holding DUPSORT data is reported, not walked.
//
// The snapshot's pages stay as they are while its read transaction is
// open (LMDB reuses no page a reader may see); the newer snapshots of a
// live owner are not checked, only those Open and Verify begin.
//
// Thread rules: any thread; `txn` must be a read transaction of `env`, open
// for the call.

#ifndef TXMQ_LIB_STORAGE_PAGE_CHECK_H_
#define TXMQ_LIB_STORAGE_PAGE_CHECK_H_

#include <lmdb.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace txmq {

struct PageCheck {
  uint64_t page_count = 0;  // the snapshot's pages, meta pages included
                            // (the file may have more, unused)
  uint64_t pages = 0;       // pages reached (an overflow run counts its pages)
  uint64_t tables = 0;      // trees walked: the free list, the main table, and
                            // every named table
  // One line per problem, naming the table and the page; at most
  // `max_problems` of them, then "(more problems not listed)".
  std::vector<std::string> problems;
  bool ok() const { return problems.empty(); }
};

// Walks every page of the snapshot `txn` of `env` reads. `progress`, when
// set, is called now and then with the pages read so far and the file's
// page count; returning false stops the walk with CANCELLED.
// Errors: DATA_LOSS when the page size is impossible or the file is
// shorter than its meta pages; ABORTED when the snapshot's meta page was
// rewritten meanwhile (a live owner committed twice since `txn` began:
// begin again); an errno status when the file cannot be mapped; CANCELLED.
// Damage is in the result, not in the status.
absl::StatusOr<PageCheck> CheckPages(
    MDB_env* env, MDB_txn* txn, size_t max_problems = 1000,
    const std::function<bool(uint64_t, uint64_t)>& progress = {});

// Before mdb_env_open of `dir`: the meta pages as LMDB will read them. LMDB
// divides by the page size a meta page gives and maps the pages it counts,
// unchecked (a page size of 0 is SIGFPE inside mdb_env_open). DATA_LOSS
// when the page size is not a power of two in [512, 65536], the two meta
// pages disagree on it, or the newest counts far more pages than the file
// has. OK for anything LMDB itself refuses cleanly (no file, an empty or
// short file, not LMDB).
absl::Status CheckMetaPages(std::string_view dir);

// CheckPages of a new read snapshot of `env` (begun again on ABORTED), for
// Open: DATA_LOSS naming `dir` and the first few problems when there is
// damage.
absl::Status CheckPagesOnOpen(MDB_env* env, std::string_view dir);

}  // namespace txmq

#endif  // TXMQ_LIB_STORAGE_PAGE_CHECK_H_
